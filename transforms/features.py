"""How a chain changes a sample's fields, worked out without data (LeRobot's `transform_features`, done
for every transform): each transform's `features(fields)` maps {name: shape} to {name: shape}, so a
whole chain is checked against the sample schema before any job starts."""

from __future__ import annotations

from collections.abc import Callable

from vlamix.schemas.embodiment import MAX_DIMS, MODEL_HORIZON, Embodiment

__all__ = ["ChainError", "chain_features", "check_chain", "input_features", "written"]

Shape = tuple  # ints, or names for sizes known only with data ("T", "n")


class ChainError(ValueError):
    """A chain whose transforms do not fit together or do not produce the sample schema's shapes."""


def written(transform: Callable) -> tuple[str, ...]:
    """The fields a transform writes (values, not only shapes): its `writes`, else its one `key`."""
    fields = getattr(transform, "writes", None) or (
        (transform.key,) if isinstance(getattr(transform, "key", None), str) else None
    )
    if fields is None:
        raise ChainError(
            f"{type(transform).__name__} says neither which fields it writes (`writes`) nor `key`"
        )
    return tuple(fields)


def input_features(emb: Embodiment) -> dict[str, Shape]:
    """What build hands the chain: one frame's state, the episode's actions, the frame index and texts."""
    return {
        "state": (emb.state_dim,),
        "episode_actions": ("T", emb.action_dim),
        "frame": (),
        "task": (),
        "target": (),
        "key": (),
    }


def chain_features(chain: list[Callable], fields: dict[str, Shape]) -> dict[str, Shape]:
    for t in chain:
        describe = getattr(t, "features", None)
        if describe is None:
            raise ChainError(
                f"{type(t).__name__} does not declare how it changes the fields (add `features`)"
            )
        try:
            fields = describe(dict(fields))
        except KeyError as e:
            raise ChainError(
                f"{type(t).__name__} needs field {e.args[0]!r}, which no earlier transform provides"
            ) from e
        except ValueError as e:
            raise ChainError(f"{type(t).__name__}: {e}") from e
    return fields


def check_chain(chain: list[Callable], emb: Embodiment) -> dict[str, Shape]:
    """Raise ChainError unless the chain turns the embodiment's frames into sample-schema shapes."""
    out = chain_features(chain, input_features(emb))
    want = {
        "state": (MAX_DIMS,),
        "actions": (MODEL_HORIZON, MAX_DIMS),
        "action_is_pad": (MODEL_HORIZON,),
        "state_dim_mask": (MAX_DIMS,),
        "action_dim_mask": (MAX_DIMS,),
        "prompt": (),
    }
    for name, shape in want.items():
        if out.get(name) != shape:
            raise ChainError(
                f"embodiment {emb.name}: the chain leaves {name} with shape {out.get(name)}, the sample schema needs {shape}"
            )
    return out
