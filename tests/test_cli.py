import json

from lreorg_hub.cli import main


def test_info_shows_config_and_fitted_state(tiny_bundle, tmp_path, capsys):
    tiny_bundle.save_pretrained(tmp_path / "bundle")
    assert main(["info", str(tmp_path / "bundle")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["num_groups"] == 8
    assert info["fitted"]["identity"] is True and info["fitted"]["hair color"] is True


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lreorg: error: ") and "is not a folder with an LReOrg bundle" in err


def test_keywords_json(capsys):
    assert main(["keywords", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1] == {"keyword": "gender", "subcategories": ["male", "female"],
                       "prompts": ["a photo of a male.", "a photo of a female."],
                       "region": "inner"}
