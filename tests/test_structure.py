r"""The package's shape: no module over 500 lines, and no import circle
among its modules (imports inside functions and under ``TYPE_CHECKING``
count too)."""
import ast
import os
import os.path as osp

import pytest

PACKAGE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                   'diffkg_pyg')


def modules():
    r"""Module name -> file, for every module of the package."""
    out = {}
    root = osp.dirname(PACKAGE)
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith('.py'):
                path = osp.join(folder, file)
                name = osp.relpath(path, root)[:-3].replace(os.sep, '.')
                out[name.removesuffix('.__init__')] = path
    return out


def import_graph(found):
    r"""Module -> the package modules its source imports, anywhere in it
    (``from a import b`` counts :obj:`a.b` where it is a module, else
    :obj:`a`)."""
    graph = {}
    for name, path in found.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        package = name if path.endswith('__init__.py') else \
            name.rpartition('.')[0]
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parts = package.split('.')
                    base = '.'.join(parts[:len(parts) - node.level + 1] +
                                    ([base] if base else []))
                for alias in node.names:
                    sub = f'{base}.{alias.name}'
                    edges.add(sub if sub in found else base)
        graph[name] = {e for e in edges if e in found and e != name}
    return graph


def find_cycle(graph):
    r"""One import circle as a list of modules, or :obj:`None`."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_module_over_500_lines():
    sizes = {}
    for name, path in modules().items():
        with open(path) as f:
            sizes[name] = sum(1 for _ in f)
    assert {k: v for k, v in sizes.items() if v > 500} == {}


def test_no_import_circle():
    cycle = find_cycle(import_graph(modules()))
    assert cycle is None, ' -> '.join(cycle)


@pytest.mark.parametrize('graph,has_cycle', [
    ({'a': {'b'}, 'b': {'c'}, 'c': set()}, False),
    ({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}, True),
    ({'a': {'b', 'c'}, 'b': set(), 'c': {'c2'}, 'c2': {'c'}}, True),
])
def test_find_cycle(graph, has_cycle):
    assert (find_cycle(graph) is not None) == has_cycle


def test_the_graph_sees_lazy_and_type_checking_imports(tmp_path):
    # The checker itself: imports inside functions and TYPE_CHECKING
    # blocks are edges.
    (tmp_path / 'pkg').mkdir()
    (tmp_path / 'pkg' / '__init__.py').write_text('')
    (tmp_path / 'pkg' / 'a.py').write_text(
        'from typing import TYPE_CHECKING\n'
        'if TYPE_CHECKING:\n    from pkg.b import B\n')
    (tmp_path / 'pkg' / 'b.py').write_text(
        'def f():\n    from pkg import a\n')
    found = {'pkg': str(tmp_path / 'pkg' / '__init__.py'),
             'pkg.a': str(tmp_path / 'pkg' / 'a.py'),
             'pkg.b': str(tmp_path / 'pkg' / 'b.py')}
    graph = import_graph(found)
    assert graph['pkg.a'] == {'pkg.b'} and graph['pkg.b'] == {'pkg.a'}
    assert find_cycle(graph) is not None


def unit_layers(graph):
    r"""The package's parts (its top-level modules and sub-packages) by
    layer: a part's layer is one above the highest layer it imports (0
    for a part that imports no other), so each layer imports only the
    ones before it. Returns a list of layers, each a dict part -> the
    parts it imports."""
    def unit(module):
        return '.'.join(module.split('.')[:2])

    parts = {}
    for module, imported in graph.items():
        parts.setdefault(unit(module), set()).update(
            unit(m) for m in imported if unit(m) != unit(module))
    level = {}

    def depth(part, seen=()):
        assert part not in seen, f'import circle between parts: {seen}'
        if part not in level:
            level[part] = 1 + max((depth(p, seen + (part, ))
                                   for p in parts[part]), default=-1)
        return level[part]

    for part in parts:
        depth(part)
    return [{p: parts[p] for p in sorted(parts) if level[p] == i}
            for i in range(max(level.values()) + 1)]


def layers_text(layers, found):
    def name(part):  # As the files are: utils.py, data/, __init__.py.
        if part == 'diffkg_pyg':
            return '__init__.py'
        package = any(m.startswith(part + '.') for m in found)
        return part.removeprefix('diffkg_pyg.') + ('/' if package else
                                                    '.py')

    lines = []
    for i, layer in enumerate(layers, 1):
        cells = []
        for part, imported in layer.items():
            uses = ', '.join(f'`{name(p)}`' for p in sorted(imported))
            cells.append(f'`{name(part)}`' + (f' (imports {uses})' if uses
                                              else ''))
        lines.append(f'{i}. ' + '; '.join(cells))
    return '\n'.join(lines) + '\n'


BEGIN, END = '<!-- layers: begin -->\n', '<!-- layers: end -->\n'


def test_the_layers_of_the_architecture_guide():
    # The guide's layer list is the import graph's, regenerated here.
    path = osp.join(osp.dirname(PACKAGE), 'docs', 'guides',
                    'architecture.md')
    with open(path) as f:
        text = f.read()
    shown = text.split(BEGIN)[1].split(END)[0]
    found = modules()
    expected = layers_text(unit_layers(import_graph(found)), found)
    assert shown == expected, 'replace the list in docs/guides/' \
        'architecture.md with:\n' + expected


def test_unit_layers():
    graph = {'p.a': {'p.b.x'}, 'p.b.x': {'p.b.y', 'p.c'}, 'p.b.y': set(),
             'p.c': set()}
    assert unit_layers(graph) == [{'p.c': set()}, {'p.b': {'p.c'}},
                                  {'p.a': {'p.b'}}]
