"""Turning the errors of the packages below into messages a visitor can read."""

from __future__ import annotations

import functools
import inspect

import gradio as gr

# Errors that describe bad input; anything else is a bug and keeps its traceback in the log.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, PermissionError, OSError)


def shown(fn):
    """Re-raise input errors of ``fn`` (function or generator) as ``gr.Error`` with the message."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except USER_ERRORS as err:
                raise gr.Error(message_of(err)) from err
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as err:
            raise gr.Error(message_of(err)) from err
    return wrapper


def message_of(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return text or type(err).__name__
