import importlib


def test_app_builds_with_the_keyword_table(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    import gradio as gr

    app = importlib.import_module("app")
    assert isinstance(app.demo, gr.Blocks)
    tables = [c for c in app.demo.blocks.values() if isinstance(c, gr.Dataframe)]
    (table,) = tables
    rows = table.value["data"]
    assert [r[0] for r in rows][:3] == ["identity", "gender", "age"]
