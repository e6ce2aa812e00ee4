"""Questions to a human. Callers ask only when `output.isatty()`; questionary is imported here,
on first use, so scripts and `--help` never load prompt_toolkit.

Each question returns the answer, or None when the user ends input (Ctrl-D). Ctrl-C raises
KeyboardInterrupt, which `main` turns into 130.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence


def _with_eof_cancel(question: Any) -> Any:
    """questionary ignores Ctrl-D; make it end the question the way EOF ends `read`."""
    from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
    from prompt_toolkit.keys import Keys

    extra = KeyBindings()

    @extra.add(Keys.ControlD, eager=True)
    def _(event: Any) -> None:
        event.app.exit(exception=EOFError, style="class:aborting")

    app = question.application
    app.key_bindings = merge_key_bindings([app.key_bindings, extra]) if app.key_bindings else extra
    return question


def _ask(question: Any) -> Any:
    try:
        return _with_eof_cancel(question).unsafe_ask()
    except EOFError:
        return None


def confirm(message: str) -> bool | None:
    import questionary

    return _ask(questionary.confirm(message, default=False, auto_enter=False, instruction="[y/N] "))


def checkbox(message: str, choices: Sequence[tuple[str, Any]]) -> list[Any] | None:
    """`choices` are (label, value) pairs; the answer is the chosen values, in list order."""
    import questionary

    return _ask(questionary.checkbox(message, choices=[questionary.Choice(label, value) for label, value in choices]))
