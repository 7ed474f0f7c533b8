import time, pytest
from tests.widgets.conftest import noisy
pytestmark = pytest.mark.gui
def test_dbg(make_widget, model_files, notes, qtbot):
    viewer, widget = make_widget()
    viewer.add_image(noisy((32, 32)), name="wf")
    widget.n_samples.value, widget.steps.value = 4, 60
    print(widget.settings(widget._entry()))
    job = widget.reconstruct()
    t=time.time(); ev=[]
    job.worker.yielded.connect(lambda e: ev.append((round(time.time()-t,2), type(e).__name__, getattr(e,'done',None))))
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    print(time.time()-t, job.outcome, ev[:5], ev[-5:], len(ev), notes)
