"""Human-readable views of the settings table: ``--explain`` text and docs/settings.md."""

from __future__ import annotations

from shared.settings import MODES, OWN_PREFIXES, ROLES, SETTINGS, Setting, role_names


def _modes(setting: Setting) -> str:
    modes = "all" if setting.modes == frozenset(MODES) else ", ".join(sorted(setting.modes))
    if setting.roles == frozenset(ROLES):
        return modes
    return f"{modes} (ROLE {role_names(setting.roles)})"


def _names(setting: Setting) -> str:
    return f"{setting.name} (or {setting.name}_FILE)" if setting.file_variant else setting.name


def _readers(setting: Setting) -> str:
    return "renderer, app" if setting.app_env else "renderer"


def explain_text() -> str:
    blocks = []
    for setting in SETTINGS:
        lines = [
            _names(setting),
            f"    {setting.help}",
            f"    default: {setting.default_text()}",
            f"    accepts: {setting.parser.accepts}",
            f"    modes:   {_modes(setting)}",
            f"    read by: {_readers(setting)}",
        ]
        if setting.secret:
            lines.append(
                "    secret:  never printed; never rendered except where supervisor needs it"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    lines = [
        "# Settings",
        "",
        "<!-- Generated from shared/settings.py by `python render_config.py --update-reference`;"
        " `--check` fails when this file is stale. Do not edit. -->",
        "",
        "Every setting is an environment variable. Precedence: command-line flag "
        "(`--production-mode`/`--dev-mode`) > environment > `--env-file` > default. "
        "Settings marked *or NAME_FILE* may instead name a file holding the value (for secrets). "
        "Unknown variables starting with "
        + ", ".join(f"`{prefix}`" for prefix in OWN_PREFIXES)
        + " are reported with a did-you-mean. Invalid values stop the render with exit code 2. The"
        " application parses the settings it reads with the same definitions "
        "(`shared/settings.py`), so what renders is what the programs accept.",
        "",
        "| Variable | Default | Accepted values | Modes | Read by | Description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        name = f"`{setting.name}`" + (
            f" (or `{setting.name}_FILE`)" if setting.file_variant else ""
        )
        help_text = setting.help + (" Secret." if setting.secret else "")
        lines.append(
            f"| {name} | {_cell(setting.default_text())} | {_cell(setting.parser.accepts)} "
            f"| {_modes(setting)} | {_cell(_readers(setting))} | {_cell(help_text)} |"
        )
    return "\n".join(lines) + "\n"
