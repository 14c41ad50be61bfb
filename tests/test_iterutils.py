import pytest

from tickertape.iterutils import batched


def test_batched_groups_lazily_with_a_short_last_batch() -> None:
    """Lists of the size asked, the last one shorter; nothing read before it is asked for."""
    consumed: list[int] = []

    def items() -> object:
        for i in range(5):
            consumed.append(i)
            yield i

    it = batched(items(), 2)  # type: ignore[arg-type]
    assert next(it) == [0, 1]
    assert consumed == [0, 1]
    assert list(it) == [[2, 3], [4]]
    assert list(batched([], 3)) == []


def test_batched_refuses_a_size_below_one() -> None:
    """A size of 0 is a ValueError naming the bound."""
    with pytest.raises(ValueError, match="≥ 1"):
        list(batched([1], 0))
