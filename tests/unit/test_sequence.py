"""The client's record of seen seqs: duplicates dropped, late arrivals kept."""

from chatclient.sequence import SeqTracker


def test_a_late_lower_seq_of_a_new_conversation_is_still_new() -> None:
    seqs = SeqTracker()
    seqs.add("c", 2)  # seq 2 delivered first (another instance stored 1)
    assert seqs.seen("c", 2)
    assert not seqs.seen("c", 1)
    seqs.add("c", 1)
    assert seqs.seen("c", 1)
    seqs.add("c", 3)
    assert seqs.seen("c", 3) and not seqs.seen("c", 4)
    assert seqs.floor("c") == 3


def test_holes_above_the_floor_and_duplicates() -> None:
    seqs = SeqTracker()
    seqs.seed("c", 5)
    assert seqs.seen("c", 1) and seqs.seen("c", 5)
    seqs.add("c", 7)
    assert seqs.floor("c") == 5 and seqs.last("c") == 7
    assert not seqs.seen("c", 6) and seqs.seen("c", 7)
    seqs.add("c", 6)
    assert seqs.floor("c") == 7


def test_seed_after_a_live_start_makes_everything_below_seen() -> None:
    seqs = SeqTracker()
    seqs.add("c", 10)
    seqs.seed("c", 10)
    assert seqs.seen("c", 3)
    assert seqs.floors() == {"c": 10}
