"""Read the report back the way a reader sees it: the text of each figure cell."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser

from babel.numbers import get_currency_symbol, parse_decimal


@dataclass
class Cell:
    attrs: dict[str, str]
    text: str = ""


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def find_all(self, tag: str) -> list[Node]:
        out = []
        for c in self.children:
            if c.tag == tag:
                out.append(c)
            out += c.find_all(tag)
        return out

    def by_id(self, ident: str) -> Node | None:
        for c in self.children:
            if c.attrs.get("id") == ident:
                return c
            hit = c.by_id(ident)
            if hit:
                return hit
        return None

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


VOID = {"meta", "br", "input", "img", "link", "hr", "col"}


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(Node("#text", {}, text=data))


def parse(html: str) -> Node:
    t = _Tree()
    t.feed(html)
    return t.root


def amount(text: str, currency: str, locale: str = "en_US") -> Decimal:
    """Parse a displayed amount ('−$1,234.56') back into a Decimal."""
    t = text.strip().replace("\u2212", "-").replace(get_currency_symbol(currency, locale), "")
    t = t.replace("\xa0", "").replace(" ", "")
    return parse_decimal(t, locale=locale, strict=False)
