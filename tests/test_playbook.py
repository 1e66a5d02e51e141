"""The playbook library (issue 18): real scripts per vertical for every play, loaded with errors
that name file and line, checked by `salesbot check`, chosen by an account's `vertical`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.domain.display import PLAY_ADVICE, PLAY_NAMES
from bot.errors import TemplateError
from bot.objections.library import ObjectionLibrary
from bot.playbook.library import PLAYS, PlaybookLibrary, validate_playbook
from bot.templates import TemplateLibrary
from tests.conftest import ROOT, write_config

TEMPLATES = ROOT / "scripts_templates"
VERTICALS = ("general", "cars", "education", "skincare")


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def own_templates(tmp_path: Path) -> Path:
    """A copy of the shipped templates and a config that uses it."""
    shutil.copytree(TEMPLATES, tmp_path / "scripts_templates")
    return write_config(tmp_path, (ROOT / "config.toml").read_text(encoding="utf-8"))


def test_every_vertical_covers_every_play() -> None:
    library = PlaybookLibrary.load(TEMPLATES)
    assert set(VERTICALS) <= set(library.verticals)
    for vertical in VERTICALS:
        for play in PLAYS:
            own = [s for s in library.all() if s.vertical == vertical and s.play == play]
            assert 2 <= len(own) <= 4, (vertical, play, len(own))
    assert set(PLAY_NAMES) == set(PLAYS) == set(PLAY_ADVICE)


def test_the_shipped_playbook_passes_validation() -> None:
    templates = TemplateLibrary(TEMPLATES)
    validate_playbook(PlaybookLibrary.load(TEMPLATES), ObjectionLibrary.load(TEMPLATES), templates)


def test_a_vertical_comes_before_the_general_scripts() -> None:
    library = PlaybookLibrary.load(TEMPLATES)
    found = library.scripts(vertical="cars", play="discovery", stage="potential")
    verticals = [s.vertical for s in found]
    assert verticals[0] == "cars" and "general" in verticals
    assert verticals == sorted(verticals, key=lambda v: v != "cars")
    # within a vertical, scripts made for the stage come before those for any stage
    assert all("potential" in s.stages or not s.stages for s in found)
    assert library.script("cars-discovery-usage") is not None
    assert library.script("price-value-first") is None


def test_a_verticals_version_of_a_general_script_replaces_it() -> None:
    """cars-referral-ask-reward is the car shop's general-referral-ask-reward: a KOC's card offers
    one reward (a free service), not that and the general "一份心意" side by side."""
    library = PlaybookLibrary.load(TEMPLATES)
    for vertical in ("cars", "education", "skincare"):
        ids = [s.id for s in library.scripts(vertical=vertical, play="referral_ask", stage="koc")]
        assert f"{vertical}-referral-ask-reward" in ids and "general-referral-ask-reward" not in ids
        assert "general-referral-ask-group" in ids  # a general script without a version stays
    assert "general-referral-ask-reward" in [s.id for s in library.scripts(vertical="general")]


def test_scripts_presume_only_what_their_stages_have_lived() -> None:
    """A new friend who never answered (the stranger step) has not chatted "for a long time"; a
    repeat buyer is not "just starting"; and no customer reads the rep's word for a sale."""
    library = PlaybookLibrary.load(TEMPLATES)
    for script in library.all():
        if "stranger" in script.stages or not script.stages:
            for presumed in ("好久", "谢谢回复", "之前问"):
                if script.play == "discovery" and presumed == "谢谢回复":
                    continue  # a first reply's card: the customer has just written
                assert presumed not in script.text, (script.id, presumed)
        if "repeat" in script.stages:
            assert "刚开始用" not in script.text, script.id
        assert "成交" not in script.text, script.id


def _broken(tmp_path: Path, old: str, new: str, file: str = "cars.toml") -> Path:
    config = own_templates(tmp_path)
    path = tmp_path / "scripts_templates" / "playbook" / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return config


def _line(tmp_path: Path, needle: str, file: str = "cars.toml") -> int:
    text = (tmp_path / "scripts_templates" / "playbook" / file).read_text(encoding="utf-8")
    return text[: text.index(needle)].count("\n") + 1


def test_check_names_a_script_with_an_unknown_moment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _broken(tmp_path, 'moment = "start"', 'moment = "soon"')
    code, out = check(config, capsys)
    line = _line(tmp_path, 'id = "cars-deliver-order-thanks"')
    assert code == 1 and f"playbook/cars.toml:{line}: script 'cars-deliver-order-thanks'" in out
    assert "moment 'soon'" in out and "Traceback" not in out


def test_check_wants_a_general_script_for_right_after_each_step_begins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = own_templates(tmp_path)
    path = tmp_path / "scripts_templates" / "playbook" / "general.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('moment = "start"', 'moment = "later"'), encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and "no deliver script for ordered" in out and "Traceback" not in out


def test_check_names_file_and_line_of_an_unknown_play(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _broken(tmp_path, 'play = "deepen"', 'play = "deep"')
    code, out = check(config, capsys)
    line = _line(tmp_path, 'id = "cars-deepen-space"')
    assert code == 1 and f"playbook/cars.toml:{line}: script 'cars-deepen-space'" in out
    assert "play 'deep'" in out and "Traceback" not in out


def test_check_names_file_and_line_of_a_broken_script_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _broken(tmp_path, "{{ rep.gift }}", "{{ rep.gfit }}")
    code, out = check(config, capsys)
    assert code == 1 and "playbook/cars.toml:" in out and "gfit" in out


def test_check_renders_each_script_without_a_customer_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _broken(
        tmp_path,
        "{% if customer.name %}{{ customer.name }}，{% endif %}想先了解下",
        "{{ customer.name }}，想先了解下",
    )
    code, out = check(config, capsys)
    line = _line(tmp_path, 'id = "cars-discovery-usage"')
    assert code == 1 and f"cars.toml:{line}: script 'cars-discovery-usage'" in out
    assert "with no customer name" in out


def test_check_rejects_an_id_the_objection_library_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _broken(tmp_path, 'id = "cars-close-stock"', 'id = "price-value-first"')
    code, out = check(config, capsys)
    assert code == 1 and "'price-value-first'" in out and "objections/price.toml" in out


def test_a_script_missing_a_key_is_named_by_its_line(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES / "playbook", tmp_path / "playbook")
    cars = tmp_path / "playbook" / "cars.toml"
    text = cars.read_text(encoding="utf-8")
    cars.write_text(text.replace('title = "预算和付款方式"\n', "", 1), encoding="utf-8")
    line = text[: text.index('id = "cars-discovery-budget"')].count("\n")  # its [[scripts]] line
    with pytest.raises(TemplateError, match=rf"cars\.toml:{line}: scripts\.1\.title: Field required"):
        PlaybookLibrary.load(tmp_path)


def test_loading_rejects_unknown_stages_bad_toml_and_a_missing_general(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES / "playbook", tmp_path / "playbook")
    cars = tmp_path / "playbook" / "cars.toml"
    shipped = cars.read_text(encoding="utf-8")
    cars.write_text(shipped.replace('stages = ["ordered"]', 'stages = ["orderd"]', 1), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"cars\.toml:\d+: script '.*' names unknown stages \['orderd'\]"):
        PlaybookLibrary.load(tmp_path)
    # a configured stage key is a known name too
    PlaybookLibrary.load(tmp_path, ["orderd"])
    cars.write_text(shipped + "\n[[scripts]\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"cars\.toml: not valid TOML: .*line \d+"):
        PlaybookLibrary.load(tmp_path)
    cars.write_bytes(shipped.encode("gbk"))
    with pytest.raises(TemplateError, match=r"cars\.toml: not UTF-8 text"):
        PlaybookLibrary.load(tmp_path)
    cars.write_text(shipped, encoding="utf-8")
    (tmp_path / "playbook" / "general.toml").unlink()
    with pytest.raises(TemplateError, match=r"general\.toml not found"):
        PlaybookLibrary.load(tmp_path)


def test_an_unknown_vertical_is_a_config_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = own_templates(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('vertical = "cars"', 'vertical = "car"'), encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and "accounts.0.vertical: unknown vertical 'car'" in out
    assert "cars, education, general, skincare" in out and "Traceback" not in out
    config.write_text(text.replace('vertical = "cars"', 'vertical = "汽车"'), encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and "accounts.0.vertical" in out
