"""Count the import cycles inside the ``ringgen`` package.

Every import statement counts, module-level and inside functions (grimp reads both), so a cycle
hidden by a function-level import is still a cycle. A cycle is reported as a strongly connected
component of the module graph (two or more modules that reach each other), with one shortest loop
through it as an example.

    python tools/import_cycles.py          # prints each cycle, exits 1 when there is one
"""

from __future__ import annotations

import sys

import grimp


def import_graph(package: str = "ringgen") -> dict[str, set[str]]:
    """module -> modules of ``package`` it imports (any import statement anywhere in the module)."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``edges`` with two or more modules, sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def shortest_loop(edges: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One shortest loop through the first module of ``comp``, staying inside ``comp``."""
    start, inside = comp[0], set(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return (
                        [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
                    )
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def main() -> int:
    edges = import_graph()
    found = cycles(edges)
    for comp in found:
        print(f"cycle of {len(comp)} modules: {' -> '.join(shortest_loop(edges, comp))}")
        print(f"    members: {', '.join(comp)}")
    print(f"{len(found)} import cycle(s) in ringgen/ ({len(edges)} modules)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
