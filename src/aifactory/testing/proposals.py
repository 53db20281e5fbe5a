"""Complete proposal sections and small real PDFs, for tests of full-mode proposals."""

from __future__ import annotations

from typing import Any

from aifactory.domain.proposal_sections import ETHICS_QUESTIONS

#: Every section a Fast Lane, Large Scale or AI for Science proposal needs to be submitted.
SECTIONS: dict[str, Any] = {
    "team": [
        {
            "name": "Aino Virtanen",
            "role": "principal investigator",
            "organisation": "Nordic Tokens Oy",
            "expertise": "language models",
        }
    ],
    "technical": {
        "method": "decoder-only transformer, 1B parameters",
        "software": "PyTorch 2, FSDP",
        "scaling": "90% weak scaling from 8 to 64 GPUs",
        "workflow": "tokenise, pre-train, evaluate",
    },
    "data": {
        "datasets": "Finnish public-domain books",
        "sources": "national library",
        "licences": "public domain",
        "personal_data": False,
    },
    "ethics": {q: {"answer": False} for q in ETHICS_QUESTIONS},
}


def pdf_bytes(text: str = "hello", pad: int = 0) -> bytes:
    """A minimal valid one-page PDF (``pad`` adds that many bytes in a comment)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%" + b"x" * pad + b"\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def form_fields(
    partition: str, gpu_hours: str, justification: str = "training runs"
) -> dict[str, str]:
    """The apply form's fields for a complete full-mode proposal with one resource row."""
    s = SECTIONS
    fields = {
        "resources.0.partition": partition,
        "resources.0.gpu_hours": gpu_hours,
        "resources.0.justification": justification,
        **{f"team.0.{k}": v for k, v in s["team"][0].items()},
        **{f"technical.{k}": v for k, v in s["technical"].items()},
        **{f"data.{k}": v for k, v in s["data"].items() if isinstance(v, str)},
        "data.personal_data": "no",
    }
    return fields | {f"ethics.{q}": "no" for q in ETHICS_QUESTIONS}
