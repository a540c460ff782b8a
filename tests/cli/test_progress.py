"""Progress in logs: a plain line every 10% of the work or every 30 s, never nothing."""

import io

from memsink_bench.progress import LineProgress, progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_every_tenth_of_the_work():
    stream, clock = io.StringIO(), Clock()
    bar = LineProgress(200, "train standard", "step", stream=stream, clock=clock)
    for _ in range(200):
        clock.now += 0.01
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("train standard: 20/200 steps (10%)") and lines[-1].startswith("train standard: 200/200")


def test_a_line_every_30_seconds_when_the_work_is_slow():
    stream, clock = io.StringIO(), Clock()
    bar = LineProgress(1000, "hard-concrete", "step", stream=stream, clock=clock)
    for _ in range(4):
        clock.now += 31.0
        bar.update(1)
    bar.set_postfix(loss="0.500")
    bar.close()                      # nothing new since the last line: no duplicate
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/1000", "2/1000", "3/1000", "4/1000"]


def test_quiet_prints_nothing(capsys):
    bar = progress(10, "x", "step", enabled=False)
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""


def test_not_a_terminal_gives_plain_lines(capsys):
    bar = progress(2, "ig on standard", "point")       # pytest's stderr is not a terminal
    bar.update(2)
    bar.close()
    assert "ig on standard: 2/2 points (100%)" in capsys.readouterr().err
