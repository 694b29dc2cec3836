"""The retrieval navigator through the real navigation loop, with the packaged MiniLM.

Captions come from a timed transcript written the way the CPU captioner writes speech,
so the test controls exactly where each fact is said.
"""

from __future__ import annotations

from app.core.navigator import Budgets, navigate
from app.core.ports import CaptionResult, NavigationState, SubtitleLine, VideoQAResult
from app.core.protocol import parse_reply, parse_tool_call
from app.core.tree import VideoGeometry
from app.models.cpu.policy import RetrievalPolicy
from app.models.cpu.text import said

FPS = 10.0
TRANSCRIPT = (
    SubtitleLine(5.0, 9.0, "Good morning and welcome to the garden tour."),
    SubtitleLine(40.0, 44.0, "These tomatoes need a lot of sun and water."),
    SubtitleLine(95.0, 99.0, "The roses were planted by my grandmother in 1962."),
    SubtitleLine(151.0, 155.0, "Our beehives produce about forty kilograms of honey a year."),
    SubtitleLine(200.0, 204.0, "Thank you for visiting, see you next spring."),
)


class TranscriptCaptions:
    """A caption source that writes each node's speech as the CPU captioner does."""

    def __init__(self, geometry: VideoGeometry) -> None:
        self.geometry = geometry
        self.requested: list[tuple[int, ...]] = []

    async def get_caption(self, node: tuple[int, ...]) -> CaptionResult:
        self.requested.append(node)
        start, end = self.geometry.seconds(node)
        lines = [said(line.start, line.text) for line in TRANSCRIPT
                 if line.end >= start and line.start <= end]
        text = " ".join([f"This clip runs from {start:.1f}s to {end:.1f}s.", *lines])
        return CaptionResult(node=node, caption=text, cached=True,
                             frame_times=tuple(self.geometry.frame_times(node)))


class TranscriptQA:
    def __init__(self, geometry: VideoGeometry) -> None:
        self.geometry = geometry
        self.asked: list[tuple[int, ...]] = []

    async def ask(self, node: tuple[int, ...], query: str) -> VideoQAResult:
        self.asked.append(node)
        start, end = self.geometry.seconds(node)
        lines = [said(line.start, line.text) for line in TRANSCRIPT
                 if line.end >= start and line.start <= end]
        answer = " ".join(lines) or "The question is not related to the video segment."
        return VideoQAResult(node=node, query=query, answer=answer, raw_reply=answer,
                             frame_times=tuple(self.geometry.videoqa_frames(node)))


def geometry() -> VideoGeometry:
    return VideoGeometry(num_frames=2400, fps=FPS)  # 240 s, width 4: 60 s / 15 s / 3.75 s


async def run(question: str, options: tuple[str, ...] = (), max_rounds: int = 30):
    geo = geometry()
    captions, qa = TranscriptCaptions(geo), TranscriptQA(geo)
    trace = await navigate(question=question, options=options, geometry=geo,
                           policy=RetrievalPolicy(), captions=captions, video_qa=qa,
                           budgets=Budgets(max_rounds=max_rounds))
    return trace, captions, qa


async def test_descends_to_where_it_is_said_and_answers_with_the_span() -> None:
    trace, captions, qa = await run("How much honey do the beehives produce?")
    geo = geometry()
    leaf = geo.node_at(151.0, 3)
    assert captions.requested[4:] == [leaf[:2], leaf]  # after the 4 high captions
    assert qa.asked == [leaf]
    assert trace.outcome == "answered"
    assert "forty kilograms of honey" in trace.answer
    assert [r.kind for r in trace.rounds] == ["get_caption", "get_caption", "video_qa", "answer"]
    for rnd in trace.rounds[:3]:
        assert rnd.start is not None and rnd.start <= 151.0 <= rnd.end + 4.0
        assert rnd.think and "0." in rnd.think  # the scores are explained


async def test_multiple_choice_picks_the_supported_option() -> None:
    options = ("In 1990 by a neighbour", "In 1962 by my grandmother", "Last spring",
               "They were bought")
    trace, _captions, qa = await run("When were the roses planted and by whom?", options)
    assert trace.answer == "B"
    assert qa.asked == [geometry().node_at(95.0, 3)]


async def test_answers_in_the_last_round() -> None:
    trace, _captions, _qa = await run("How much honey do the beehives produce?", max_rounds=2)
    assert trace.outcome == "answered"
    assert [r.kind for r in trace.rounds] == ["get_caption", "answer"]
    assert "honey" in trace.answer


def test_replies_follow_the_protocol() -> None:
    policy = RetrievalPolicy()
    state = NavigationState(
        question="Where are the tomatoes?", options=(), width=4, duration=240.0,
        captions={(1,): said(40.0, "These tomatoes need sun.")}, spans={(1,): (0.0, 59.9)},
    )
    reply = parse_reply(policy.decide(state))
    assert reply.think and reply.tool and reply.answer is None
    call = parse_tool_call(reply.tool, 4)
    assert call.name == "get_caption" and call.node == (1, 3)
    empty = NavigationState(question="Anything?", options=(), width=4, duration=240.0)
    assert parse_reply(policy.decide(empty)).answer is not None
    quoted = NavigationState(
        question='What is "it"?\nSecond line', options=(), width=4, duration=240.0,
        captions={(1, 1, 1): said(1.0, "it is a thing")}, spans={(1, 1, 1): (0.0, 3.7)},
    )
    call = parse_tool_call(parse_reply(policy.decide(quoted)).tool or "", 4)
    assert call.name == "video_qa" and call.query == 'What is "it"? Second line'


def test_times_map_to_the_child_holding_them() -> None:
    policy = RetrievalPolicy()
    state = NavigationState(question="q", options=(), width=4, duration=240.0,
                            spans={(1, 3): (30.0, 45.0)})
    assert policy._child_at((1, 3), 41.0, state) == (1, 3, 3)
    # A line of speech that began before the node (and runs into it): its first child.
    assert policy._child_at((1, 3), 28.0, state) == (1, 3, 1)
    assert policy._child_at((2,), 75.0, state) == (2, 2)  # spans of unseen nodes: equal slices
    assert policy._child_at((1, 3), None, state) is None


class ProseCaptions:
    """Captions as a vision model might write them: prose, no timestamps."""

    def __init__(self, geometry: VideoGeometry, texts: dict[tuple[int, ...], str]) -> None:
        self.geometry = geometry
        self.texts = texts

    async def get_caption(self, node: tuple[int, ...]) -> CaptionResult:
        text = self.texts.get(node, "A quiet garden path with trees and a wooden fence.")
        return CaptionResult(node=node, caption=text, cached=True,
                             frame_times=tuple(self.geometry.frame_times(node)))


async def test_prose_captions_without_times_are_searched_child_by_child() -> None:
    geo = geometry()
    texts = {
        (3,): "A beekeeper in a white suit opens wooden beehives full of honey.",
        (3, 2): "The beekeeper lifts a frame dripping with golden honey from a beehive.",
        (3, 2, 3): "Close-up: honey pours from the frame into a large glass jar.",
    }
    captions = ProseCaptions(geo, texts)
    qa = TranscriptQA(geo)
    trace = await navigate(question="Where is the honey poured into a jar?", geometry=geo,
                           policy=RetrievalPolicy(), captions=captions, video_qa=qa)
    assert trace.outcome == "answered"
    fetched = [tuple(r.node) for r in trace.rounds if r.kind == "get_caption"]
    assert fetched[:2] == [(3, 1), (3, 2)]  # no times: children in order until one matches
    assert (3, 2, 3) in fetched and qa.asked == [(3, 2, 3)]
    assert "glass jar" in trace.answer
