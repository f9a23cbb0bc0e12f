"""JupyterLab's settings for this workbook: `make lab` starts JupyterLab with this file (`--config`), and so does
tests/test_browser.py, which runs `make lab`.

- The server's root is the project folder, so the file browser reaches nbs/, data/, scores/, posts/ and
  reports/; JupyterLab opens on nbs/index.ipynb, which says what to open for each job.
- Saving a notebook under nbs/ or posts/ cleans it the way `nbdev-clean` does, and also drops its outputs and saved
  widget state, the way these notebooks are committed. The scoring notebook's output is the panel, with the rater's
  name in it: without this, every scoring session (JupyterLab autosaves) would change the tracked nbs/score.ipynb,
  and merely opening a notebook changes its kernel metadata. Other notebooks only lose their saved widget state.
"""
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CLEAN_FOLDERS = ("nbs", "posts")  # notebooks committed without outputs


def clean_on_save(model:dict, path:str, contents_manager=None, **kwargs):
    "Jupyter's pre-save hook: clean a notebook before it is written to `path` (relative to the server's root)."
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict): return
    notebook = model["content"]
    parts = Path(path.strip("/")).parts
    if parts and parts[0] in CLEAN_FOLDERS:
        from nbdev.clean import clean_nb
        from nbdev.config import get_config as nbdev_settings
        settings = nbdev_settings(path=ROOT)
        clean_nb(notebook, allowed_metadata_keys=settings.get("allowed_metadata_keys"),
                 allowed_cell_metadata_keys=settings.get("allowed_cell_metadata_keys"), clean_ids=settings.clean_ids)
        for cell in notebook["cells"]:
            if cell.get("cell_type") == "code": cell["outputs"], cell["execution_count"] = [], None
        # Shift+Enter on the last cell adds an empty one.
        while notebook["cells"] and not "".join(notebook["cells"][-1].get("source", "")).strip(): notebook["cells"].pop()
    notebook.get("metadata", {}).pop("widgets", None)


c = get_config()  # noqa: F821 (Jupyter defines get_config for its configuration files)
c.ServerApp.root_dir = str(ROOT)
c.LabApp.default_url = "/lab/tree/nbs/index.ipynb"
c.ContentsManager.pre_save_hook = clean_on_save
# JupyterLab reads its configuration twice (the server, then the lab extension) and warns that the hook is replaced by itself.
warnings.filterwarnings("ignore", message="Overriding existing pre_save_hook")
