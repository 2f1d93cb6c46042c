"""Masked names show the first character and one star, whatever the name's length."""
from __future__ import annotations

import pytest

from guahao.core.crypto import mask_name


@pytest.mark.parametrize("name, masked", [
    ("张三", "张*"), ("王小明", "王*"), ("阿卜杜热合曼·买买提", "阿*"), ("欧阳", "欧*"), ("Li", "L*"), ("李", "李*"),
    ("", ""),
])
def test_a_masked_name_is_its_first_character_and_one_star(name, masked):
    assert mask_name(name) == masked


def test_names_of_different_lengths_mask_alike():
    assert len({mask_name("阿" * n) for n in range(1, 12)}) == 1
