"""Answers people write: the *respond* decision, and questions an agent asks a person.

A person deciding a held call may, instead of approving or denying it,
write the tool's result themselves (LangChain's HITL calls this *respond*):
the tool does not run and the waiting call returns that text, a
:class:`Response`, which the framework adapters hand to the model as the
tool's output.

A *question* is the same mechanism turned around (HumanLayer's
``human_as_tool``): :meth:`Gatekeeper.ask_tool <gatekeeper.Gatekeeper.ask_tool>`
makes a tool the agent calls with a question in free text. Its calls are
always held for a person (unless the policy denies or halts them), can only
be answered or declined, never approved, and the answer comes back through
the same channels, expiry and audit as any held call.
"""

from __future__ import annotations

from ._canonical import canonical_json, truncate
from .models import ApprovalRequest, Classification, Verdict

__all__ = ["QUESTION_RULE", "QUESTION_TOOL", "Response", "approval_note", "as_question"]

#: The default name of the ask-a-person tool.
QUESTION_TOOL = "ask_a_person"
#: The rule id a question is held under when no rule of the policy holds it.
QUESTION_RULE = "question"

QUESTION_DOC = """Ask a person a question and wait for their answer.

Use it when you are unsure what the user wants, need a fact only a person
knows, or want a go-ahead before something that can't be undone. Ask one
clear question; the answer comes back as text.

Args:
    question: the question, in plain words, with the context a person needs
        to answer it.
"""


class Response(str):
    """What a person wrote in place of a tool's result (or the answer to a question).

    A ``str``, so it reaches the model as the tool's output unchanged; a
    guarded function whose call was answered this way returns it instead of
    its own result. ``approver`` wrote it, for request ``request_id`` of
    tool ``tool``. Code that needs the tool's own result type tests
    ``isinstance(result, Response)``, or sets ``approval: {respond: false}``
    on the rule that holds the tool.
    """

    approver: str
    request_id: str
    tool: str

    def __new__(cls, text: str, *, approver: str, request_id: str, tool: str) -> Response:
        self = super().__new__(cls, text)
        self.approver = approver
        self.request_id = request_id
        self.tool = tool
        return self

    def __repr__(self) -> str:
        return (
            f"Response({str(self)!r}, approver={self.approver!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (str(self), self.approver, self.request_id, self.tool))


def _rebuild(text: str, approver: str, request_id: str, tool: str) -> Response:
    return Response(text, approver=approver, request_id=request_id, tool=tool)


def as_question(cls: Classification) -> Classification:
    """The classification of a question: held for a person unless the policy refuses it.

    A rule that denies or halts the question tool stands; a rule that holds
    it keeps its group and timeout (one answer is enough: the quorum is 1).
    A question allowed, or held only by the policy's default, is held under
    rule ``question`` (nothing answers it but a person).
    """
    if cls.verdict in (Verdict.DENY, Verdict.HALT):
        return cls
    update: dict[str, object] = {
        "approval": cls.approval.model_copy(update={"respond": True, "quorum": 1})
    }
    if cls.verdict is Verdict.ALLOW or not cls.rules:  # allowed, or held by the default
        update.update(
            verdict=Verdict.REQUIRE_APPROVAL,
            rules=(QUESTION_RULE,),
            reasons=("the agent asks a person a question",),
        )
    return cls.model_copy(update=update)


def approval_note(request: ApprovalRequest | None) -> str | None:
    """A sentence for the model about what the people who approved a call did, or None.

    None when the call was not held, or was approved as asked without a
    word; else who changed the arguments (and what the call ran with) and
    what each approver said. The adapters add it to the tool's output, so
    the model knows its call was not run exactly as it made it.
    """
    if request is None:
        return None
    votes = list(request.approvals)
    said = [(d.approver, d.comment) for d in votes if d.comment and d.comment.strip()]
    if not request.edited and not said:
        return None
    names = ", ".join(dict.fromkeys(d.approver for d in votes)) or "a person"
    parts = [f"Note from the approval ({names})"]
    if request.edited:
        editors = ", ".join(dict.fromkeys(d.approver for d in votes if d.edited)) or names
        ran = canonical_json(dict(request.args)).decode("utf-8", "replace")
        if len(ran) > 2000:
            ran = ran[:2000] + "…"
        parts.append(f"{editors} changed the arguments; the tool ran with {ran}")
    for who, comment in said:
        parts.append(f'{who} said: "{truncate(" ".join((comment or "").split()), 500)}"')
    return f"{parts[0]}: {'. '.join(parts[1:])}."
