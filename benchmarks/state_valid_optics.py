"""Rewrite a model file's stated optics range (the header's ``valid_optics``), weights unchanged.

The range starts from what the header covers now (``ModelMetadata.covered_optics()``: its stated ``valid_optics``, or
the derived range of a file without one) and replaces the factor and the basis given.  Only that key of the header's
``metadata`` changes: the tensors and every other header entry are copied as stored (not re-serialised by this
package's models, so a file keeps its own format), and the script checks that the new file loads and that every
tensor equals the old one.  Bundle it with ``benchmarks/register_models.py`` (which prints the new SHA-256 for
``registry.py``).

    python benchmarks/state_valid_optics.py --model cvdm-sr-widefield --psf-width-factor 0.95 1.05 \\
        --basis "measured: …" -o runs/cvdm-sr-widefield.cvdm
"""

from __future__ import annotations

import argparse
import json

import torch
from safetensors import safe_open

from napari_cvdm.model.files import load_model_file, read_header, write_atomic
from napari_cvdm.model.metadata import ModelMetadata, ValidOptics
from napari_cvdm.registry import resolve_model_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model name or file")
    ap.add_argument("--psf-width-factor", type=float, nargs=2, metavar=("LOW", "HIGH"), help="SR range")
    ap.add_argument("--fresnel-factor", type=float, nargs=2, metavar=("LOW", "HIGH"), help="phase range")
    ap.add_argument("--basis", required=True, help="how the range was set (stated in the header)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    source = resolve_model_path(args.model)
    header = read_header(source)
    meta = json.loads(header["metadata"])
    covered = ModelMetadata.model_validate(meta).covered_optics()
    if covered is None:
        raise SystemExit(f"{args.model} states no optics: nothing to rewrite")
    update: dict = {"basis": args.basis}
    if args.psf_width_factor:
        update["psf_width_factor"] = tuple(args.psf_width_factor)
    if args.fresnel_factor:
        update["fresnel_factor"] = tuple(args.fresnel_factor)
    stated = ValidOptics.model_validate({**covered.model_dump(), **update})
    meta["valid_optics"] = stated.model_dump(mode="json")
    with safe_open(str(source), framework="pt") as fh:
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    path = write_atomic(args.output, tensors, {**header, "metadata": json.dumps(meta, ensure_ascii=False)})
    old, new = load_model_file(source), load_model_file(path)
    before, after = old.network.state_dict(), new.network.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before), "weights changed"
    assert new.info.model_dump(exclude={"valid_optics"}) == old.info.model_dump(exclude={"valid_optics"})
    print(f"{path}: valid_optics = {new.info.valid_optics.model_dump_json()}")


if __name__ == "__main__":
    main()
