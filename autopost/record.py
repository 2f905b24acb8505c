"""Small immutable records for the settings, without the dataclasses machinery.

autopost.config is on the idle `run-due` tick, which cron starts every minute. A frozen
dataclass costs an `import dataclasses` (inspect, ast, dis, tokenize) and several
compiled methods per class at import; these records cost a class statement. They behave
like frozen dataclasses where autopost uses them: construction by keyword or position
with defaults (`Factory` for a fresh mutable default), ==, hash, repr, `replace()` and
`fields()` (dataclasses' own work on them too), and assignment refused.
"""

from __future__ import annotations

from typing import Any

REQUIRED = object()


class Factory:
    """A default made fresh for each record (like dataclasses' default_factory)."""

    __slots__ = ("make",)

    def __init__(self, make: Any) -> None:
        self.make = make


class Field:
    __slots__ = ("name", "default")

    def __init__(self, name: str, default: Any) -> None:
        self.name, self.default = name, default

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


class _DataclassFields:
    """So that dataclasses.fields(), replace() and asdict() work on records too: they
    read __dataclass_fields__, built here on first use (importing dataclasses only then,
    never on the tick)."""

    def __get__(self, instance: Any, owner: type) -> dict[str, Any]:
        made = owner.__dict__.get("_dataclass_fields")
        if made is None:
            import dataclasses

            made = {}
            for f in owner.__fields__:  # type: ignore[attr-defined]
                if isinstance(f.default, Factory):
                    dc = dataclasses.field(default_factory=f.default.make)
                elif f.default is REQUIRED:
                    dc = dataclasses.field()
                else:
                    dc = dataclasses.field(default=f.default)
                dc.name, dc.type = f.name, Any
                dc._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
                made[f.name] = dc
            type.__setattr__(owner, "_dataclass_fields", made)
        return made


class Record:
    """Subclasses declare annotated fields, with a default, a Factory or neither
    (required)."""

    __fields__: tuple[Field, ...] = ()
    __dataclass_fields__ = _DataclassFields()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [Field(name, cls.__dict__.get(name, REQUIRED))
               for name in cls.__dict__.get("__annotations__", {})]
        names = {f.name for f in own}
        cls.__fields__ = (*(f for f in cls.__fields__ if f.name not in names), *own)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields_ = self.__fields__
        if len(args) > len(fields_):
            raise TypeError(f"{type(self).__name__} takes {len(fields_)} fields, "
                            f"got {len(args)}")
        for f, value in zip(fields_, args, strict=False):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__} got {f.name!r} twice")
            kwargs[f.name] = value
        for f in fields_:
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default is REQUIRED:
                raise TypeError(f"{type(self).__name__} needs {f.name!r}")
            else:
                value = f.default.make() if isinstance(f.default, Factory) else f.default
            object.__setattr__(self, f.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field {sorted(kwargs)[0]!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in self.__fields__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} ({type(self).__name__} "
                             "is immutable)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} ({type(self).__name__} "
                             "is immutable)")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__fields__)
        return f"{type(self).__name__}({inner})"


def replace(obj: Record, **changes: Any) -> Any:
    """A copy of obj with some fields changed (dataclasses.replace for records)."""
    values = {f.name: getattr(obj, f.name) for f in obj.__fields__}
    values.update(changes)
    return type(obj)(**values)


def fields(obj: Record | type[Record]) -> tuple[Field, ...]:
    return obj.__fields__
