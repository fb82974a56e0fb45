"""Name -> object registries: the one place where strings become objects.

Strings (model names, dataset names, sampler names) exist only at the edge (CLI, config files)
and are resolved once, here. An unknown name raises :class:`UnknownNameError` listing the
closest valid names.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from simulacra.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# The annotations a setting may carry, as written in the factories' signatures, with a check of
# a value read from a config file or --set (JSON) and the words that say what was expected.
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_integer, "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a name (a string)"),
    "None": (lambda v: v is None, "none"),
    "Sequence[int]": (
        lambda v: isinstance(v, list | tuple) and all(map(_is_integer, v)),
        "a list of integers",
    ),
    "Mapping[str, Any]": (lambda v: isinstance(v, Mapping), "a table of settings"),
}


def _expected_kinds(annotation: Any) -> list[tuple[Callable[[Any], bool], str]]:
    """Checks for a parameter annotated ``annotation`` (``"int | None"``, ``Sequence[int]``, ...);
    empty when any part of it is not a plain setting type (the factory then checks the value)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    parts = [part.strip() for part in text.split("|")]
    if annotation is inspect.Parameter.empty or not all(part in _KINDS for part in parts):
        return []
    return [_KINDS[part] for part in parts]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and a one-line description."""

    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """A mapping from names to objects (usually factories).

    Example::

        MODELS = Registry("model")

        @MODELS.register("vae", "Gaussian VAE (Kingma & Welling 2014)")
        def vae(info, latent_dim=16): ...

        model = MODELS.build({"name": "vae", "latent_dim": 8}, info=info)
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; the description defaults to the
        first line of the object's docstring."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, obj, doc)
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name lists the close matches."""
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(self.names())}."

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def build(self, spec: str | Mapping[str, Any], /, **extra: Any) -> Any:
        """Call the factory named by ``spec`` with its keyword arguments.

        Args:
            spec: a name, or a mapping ``{"name": ..., **kwargs}``.
            extra: further keyword arguments (e.g. the data's shape), given to the factory too.
        """
        name, kwargs = self.split(spec)
        factory = self.get(name)
        if not callable(factory):
            raise TypeError(f"{self.kind} {name!r} is not callable")
        self._check_kwargs(name, factory, kwargs, extra)
        try:
            return factory(**extra, **kwargs)
        except TypeError as err:  # a preset forwarding **kwargs to another one
            if "unexpected keyword argument" in str(err):
                raise ConfigError(f"{self.kind} {name!r}: {err}") from None
            raise

    def split(self, spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(name, settings)`` of a spec: a name, or a mapping ``{"name": ..., **settings}``."""
        if isinstance(spec, str):
            return spec, {}
        settings = dict(spec)
        if "name" not in settings:
            raise UnknownNameError(f"a {self.kind} spec needs a 'name' key; got keys {sorted(settings)}")
        return settings.pop("name"), settings

    def _check_kwargs(
        self, name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        """Raise :class:`ConfigError` naming any setting the factory does not take, or a setting whose
        value is not of its annotated type (``model 'maf': hidden must be a list of integers; found 4``)."""
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # builtins without a signature: let the call decide
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        valid = [
            p for p in params if p not in extra and params[p].kind is not inspect.Parameter.VAR_POSITIONAL
        ]
        for key, value in kwargs.items():
            if key not in params:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{self.kind} {name!r} has no setting {key!r}.{hint} Its settings: {', '.join(valid) or 'none'}."
                )
            expected = _expected_kinds(params[key].annotation)
            if expected and not any(check(value) for check, _ in expected):
                words = " or ".join(words for _, words in expected)
                raise ConfigError(f"{self.kind} {name!r}: {key} must be {words}; found {value!r}")

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def settings(self, name: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The keyword settings of the factory ``name`` with their defaults (``inspect.Parameter.empty``
        for a required one), leaving out the parameters in ``skip`` (e.g. the data's ``info``) and
        private ones (``_name``: bound by the factory, not a setting)."""
        params = inspect.signature(self.get(name)).parameters
        return {
            k: p.default
            for k, p in params.items()
            if k not in skip
            and not k.startswith("_")
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }

    def describe(self) -> dict[str, str]:
        """``{name: one-line description}`` for every entry, sorted by name."""
        return {n: self._entries[n].description for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
