from tunegate import ids


def test_ids_have_openai_prefixes_and_sort_by_creation() -> None:
    made = [ids.new_id(ids.JOB) for _ in range(200)]
    assert all(i.startswith("ftjob-") and i[6:].isalnum() for i in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_made_later_sort_later_across_prefix_kinds() -> None:
    first, second = ids.new_id(ids.FILE), ids.new_id(ids.FILE)
    assert first < second
    assert ids.new_id(ids.CHECKPOINT).startswith("ftckpt_")
    assert ids.new_id(ids.EVENT).startswith("ftevent-")


def test_short_id_is_alphanumeric() -> None:
    tag = ids.short_id()
    assert len(tag) == 8 and tag.isalnum()
