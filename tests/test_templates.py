"""Templates are data: validated at startup, errors name the file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.app import validate_setup
from bot.cli import main
from bot.errors import TemplateError
from bot.templates import AFTERCARE, COUNTDOWN, OBJECTION, WELCOME, TemplateLibrary
from tests.conftest import ROOT, make_config


def library(tmp_path: Path, files: dict[str, str]) -> TemplateLibrary:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return TemplateLibrary(tmp_path)


def test_shipped_templates_are_valid() -> None:
    names = validate_setup(make_config())
    assert "welcome/default.txt.j2" in names and len(names) >= 4


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    lib = library(tmp_path, {"welcome/a.txt.j2": "line one\n{% if off_hours %}\nunclosed\n"})
    with pytest.raises(TemplateError, match=r"welcome/a\.txt\.j2:\d+: syntax error"):
        lib.validate()


def test_unknown_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    lib = library(tmp_path, {"welcome/a.txt.j2": "你好\n{{ customer.name }}\n{{ discount_code }}\n"})
    with pytest.raises(TemplateError) as error:
        lib.validate()
    assert "welcome/a.txt.j2:3: unknown variable 'discount_code'" in str(error.value)


def test_unknown_attribute_is_caught_at_validation(tmp_path: Path) -> None:
    lib = library(tmp_path, {"welcome/a.txt.j2": "hi\n{{ rep.nick_name }}\n"})
    with pytest.raises(TemplateError, match=r"welcome/a\.txt\.j2:2: .*nick_name"):
        lib.validate()


@pytest.mark.parametrize(
    "branch",
    [
        '{% if "最后" in left %}ok{% else %}{{ rep.nick_name }}{% endif %}',  # a day step's wording
        "{% if can_act_soon %}回复1我马上安排{% else %}{{ rep.nick_name }}{% endif %}",  # the rep is away
    ],
)
def test_every_countdown_branch_is_checked(tmp_path: Path, branch: str) -> None:
    lib = library(tmp_path, {"countdown/step.txt.j2": f"{{{{ customer.name }}}}\n{branch}\n"})
    with pytest.raises(TemplateError, match=r"step\.txt\.j2:2: .*nick_name"):
        lib.validate()


def test_shipped_countdown_asks_for_a_reply_only_when_the_rep_can_act_soon() -> None:
    lib = TemplateLibrary(ROOT / "scripts_templates")
    sample = dict(COUNTDOWN.variables)
    assert "回复“1”" in lib.render("countdown/step.txt.j2", sample)
    assert "回复" not in lib.render("countdown/step.txt.j2", {**sample, "can_act_soon": False})


def test_sandbox_blocks_unsafe_access(tmp_path: Path) -> None:
    lib = library(tmp_path, {"welcome/a.txt.j2": "{{ rep.__class__.__mro__ }}"})
    with pytest.raises(TemplateError):
        lib.render("welcome/a.txt.j2", dict(WELCOME.variables))


def test_missing_required_template_is_reported(tmp_path: Path) -> None:
    config = make_config({"welcome": {"template": "welcome/nope.txt.j2"}})
    with pytest.raises(TemplateError, match=r"welcome/nope\.txt\.j2: template not found"):
        validate_setup(config)


def test_check_fails_on_bad_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    templates = tmp_path / "tpl"
    shutil.copytree(ROOT / "scripts_templates", templates)
    (templates / "welcome" / "douyin.txt.j2").write_text("{{ rep.nickname }}\n{{ typo }}\n", encoding="utf-8")
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        text.replace('templates_dir = "scripts_templates"', 'templates_dir = "tpl"'), encoding="utf-8"
    )
    assert main(["check", "--config", str(config_path)]) == 1
    assert "douyin.txt.j2:2: unknown variable 'typo'" in capsys.readouterr().err


@pytest.mark.parametrize("product", ["定金", "五年级数学一对一", "续费20课时", ""])
def test_shipped_aftercare_reads_for_a_deposit_or_a_course(product: str) -> None:
    """The product is what was bought, never the subject of 顺利吗 / 感觉怎么样 / 满意吗:
    定金这几天一切都顺利吗 and 转眼一个月了，定金您还满意吗 read like a bot."""
    lib = TemplateLibrary(ROOT / "scripts_templates")
    for days in (1, 3, 7, 30):
        text = lib.render(f"aftercare/t{days}.txt.j2", {**AFTERCARE.variables, "product": product})
        name = product or "您这次的订单"
        for odd in ("这几天一切都顺利吗", "已经一周了", "您还满意吗"):
            assert f"{name}{odd}" not in text, text


def test_objection_scripts_read_for_a_course_as_for_a_car() -> None:
    """rep.service is a list of services ("一对一学习规划、免费试听课和学习效果跟踪"): a script must not
    say "X是一对一的" of it, nor speak of 产品本身 where a course is sold."""
    from bot.objections.library import ObjectionLibrary

    lib = TemplateLibrary(ROOT / "scripts_templates")
    scripts = ObjectionLibrary.load(ROOT / "scripts_templates")
    service = "一对一学习规划、免费试听课和学习效果跟踪"
    context = {**OBJECTION.variables, "rep": {**OBJECTION.variables["rep"], "service": service}}
    for label in ("price", "comparison"):
        general, staged = scripts.scripts_for(label)
        for script in [*general, *staged]:
            text = lib.render_source(script.text, context, script.id)
            assert f"{service}是一对一的" not in text and "产品本身" not in text, text


def test_a_script_source_is_compiled_once_and_rendered_for_each_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Suggestions render scripts from their text on every customer message (issue 20): the
    compiled template is kept, the context is not."""
    lib = library(tmp_path, {})
    compiled: list[str] = []
    from_string = lib.env.from_string

    def counting(source: str) -> object:
        compiled.append(source)
        return from_string(source)

    monkeypatch.setattr(lib.env, "from_string", counting)
    source = "{{ customer.name }}您好"
    assert lib.render_source(source, {"customer": {"name": "张三"}}, "s") == "张三您好"
    assert lib.render_source(source, {"customer": {"name": "李四"}}, "s") == "李四您好"
    assert compiled == [source]
    with pytest.raises(TemplateError):  # a compiled source still checks its context
        lib.render_source(source, {}, "s")
