"""Resolve what a submission imports from its own folder tree, however its layout spelled it.

Published submissions import their bundled helpers three ways, none of which works from the
published folder alone:

1. a dotted path of the organisers' repository layout, ending in the submission folder's name:
   ``from submissions.self_tuning.<folder>.muon import ...`` resolves to ``<folder>/muon.py``.
   A path whose tail is a path inside the folder under a different folder name (the v0.6
   Shampoo's ``...shampoo_submission.optimizers.distributed_shampoo...`` from a folder named
   ``shampoo``) resolves the same way;
2. a top-level import of a module beside ``submission.py`` (``import helper``);
3. a bundled package importing its siblings as top-level modules (Distributed Shampoo's
   ``from shampoo_types import ...`` inside ``optimizers/distributed_shampoo/``): a top-level
   name that names a module or package anywhere in the folder tree resolves there, the
   shallowest one winning (two at the same depth are an error naming both).

``SubmissionImports`` is a ``sys.meta_path`` finder that does this, active only while the
submission's code runs through the loader (its import, and each call of its API functions), so
``sys.path`` is never changed. It sits after the standard finders, so an installed package or
the standard library always wins over a file of the submission; only the children of a
submission module imported under one of these names are claimed first (else the standard path
finder would load a second copy of the file).

Every file of the tree is one module object, named ``<root package>.<path.in.tree>`` under a
private root package (``_algoperf_submission_<folder>_<hash>``), whatever name imported it: a
class imported as ``shampoo_types.X`` by one file and as ``optimizers.distributed_shampoo.
shampoo_types.X`` by another is the same class, and pickling finds it by that private name.
The names the submission imported it by (``shampoo_types``, ``utils``, ``submissions`` ...) are
removed from ``sys.modules`` when the submission's code returns, so they cannot shadow another
package or another submission's helper of the same name later in the process.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import types
from collections.abc import Iterator

SKIP_DIRS = {"__pycache__", "logs", "node_modules", "site-packages", "venv"}
MAX_TREE_FILES = 5000  # a submission folder is small; a home folder passed by mistake is not
REQUIREMENT_FILES = (
    "requirements_all.txt",
    "requirements.txt",
    "submission_info.yml",
    "submission_info.yaml",
    "submissions_info.yml",
    "submissions_info.yaml",
)
# Import names that differ from their distribution's name (lower case, "-" for "_").
IMPORT_TO_DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "cv2": "opencv-python",
    "absl": "absl-py",
    "google.protobuf": "protobuf",
    "skimage": "scikit-image",
    "tensorflow_datasets": "tensorflow-datasets",
}


class SubmissionImportError(ImportError):
    """A submission's import cannot be resolved; the message says what and where we looked."""


class _AliasLoader(importlib.abc.Loader):
    """Hands out an already-imported module under another name, without running it again."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        # The import system set ``__spec__`` to the alias's spec; the module keeps its own.
        module.__spec__ = self.spec


class _SyntheticLoader(importlib.abc.Loader):
    """An empty package standing for an organisers'-layout prefix (``submissions``)."""

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        module.__path__ = []


def _canonical(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class SubmissionImports:
    """The import rules for one submission folder (see the module docstring).

    Args:
        folder: the folder holding ``submission.py``.
    """

    def __init__(self, folder: str) -> None:
        self.root = os.path.abspath(folder)
        self.folder_name = os.path.basename(self.root)
        digest = hashlib.sha1(self.root.encode()).hexdigest()[:8]
        self.package = f"_algoperf_submission_{_canonical(self.folder_name)}_{digest}"
        self._modules_by_dir, self._py_files = self._index_tree()
        self._bases, self._prefixes = self._organiser_aliases()
        self._aliases: set[str] = set()  # names in sys.modules that we put there
        self._depth = 0
        self._front = _FrontFinder(self)
        self._back = _BackFinder(self)

    # ----------------------------------------------------------------- the folder tree
    def _index_tree(self) -> tuple[dict[str, list[str]], list[str]]:
        """Top-level-importable names in each folder of the tree, and the tree's .py files."""
        by_name: dict[str, list[str]] = {}
        py_files: list[str] = []
        count = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(
                d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
            )
            count += len(filenames) + len(dirnames)
            if count > MAX_TREE_FILES:
                break
            for f in sorted(filenames):
                if f.endswith(".py"):
                    py_files.append(os.path.join(dirpath, f))
                    stem = f[:-3]
                    if stem.isidentifier() and stem != "__init__":
                        by_name.setdefault(stem, []).append(os.path.join(dirpath, f))
            for d in dirnames:
                sub = os.path.join(dirpath, d)
                if d.isidentifier() and self._is_package_dir(sub):
                    by_name.setdefault(d, []).append(sub)
        return by_name, py_files

    @staticmethod
    def _is_package_dir(path: str) -> bool:
        try:
            return any(
                e.endswith(".py") or os.path.isdir(os.path.join(path, e)) for e in os.listdir(path)
            )
        except OSError:
            return False

    def _entry(self, directory: str, name: str) -> str | None:
        """``name`` inside ``directory`` as Python finds it: a package folder, else a module
        file, else a namespace folder; or None."""
        folder = os.path.join(directory, name)
        if os.path.isfile(os.path.join(folder, "__init__.py")):
            return folder
        file = os.path.join(directory, name + ".py")
        if os.path.isfile(file):
            return file
        if os.path.isdir(folder) and self._is_package_dir(folder):
            return folder
        return None

    def _tree_path(self, parts: list[str]) -> str | None:
        """The file or folder that dotted ``parts`` name below the root, or None."""
        directory = self.root
        found = self.root
        for part in parts:
            found = self._entry(directory, part)
            if found is None:
                return None
            directory = found
        return found

    def _canonical_name(self, path: str) -> str:
        rel = os.path.relpath(path, self.root)
        if rel == ".":
            return self.package
        rel = rel[:-3] if rel.endswith(".py") else rel
        return ".".join([self.package, *rel.split(os.sep)])

    def _organiser_aliases(self) -> tuple[set[str], set[str]]:
        """Dotted names in the tree's own imports that stand for the root folder, and their
        parents (the organisers' layout, rule 1 of the module docstring)."""
        bases: set[str] = set()
        for name in self._imported_names():
            parts = name.split(".")
            base = None
            for i in range(len(parts) - 1, 0, -1):
                if parts[i] == self.folder_name and (
                    i + 1 == len(parts) or self._tree_path(parts[i + 1 : i + 2]) is not None
                ):
                    base = i + 1
                    break
            if base is None:
                for i in range(1, len(parts)):
                    if self._tree_path(parts[i:]) is not None:
                        base = i
                        break
            if base is not None:
                bases.add(".".join(parts[:base]))
        prefixes = {".".join(b.split(".")[:j]) for b in bases for j in range(1, b.count(".") + 1)}
        return bases, prefixes - bases

    def _imported_names(self) -> set[str]:
        names: set[str] = set()
        for path in self._py_files:
            try:
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), filename=path)
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names if "." in a.name)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if "." in node.module:
                        names.add(node.module)
        return names

    # ----------------------------------------------------------------- resolution
    def module_for(self, fullname: str) -> str | None:
        """The tree path that ``fullname`` resolves to, "" for a layout prefix, or None."""
        if fullname == self.package or fullname.startswith(self.package + "."):
            return None
        if fullname in self._bases:
            return self.root
        if fullname in self._prefixes:
            return ""
        for base in self._bases:
            if fullname.startswith(base + "."):
                return self._tree_path(fullname[len(base) + 1 :].split("."))
        if "." not in fullname:
            candidates = self._modules_by_dir.get(fullname, [])
            if not candidates:
                return None
            depth = min(c.count(os.sep) for c in candidates)
            # One per folder, the one Python would import from it (x/ or x.py).
            shallowest = sorted(
                {
                    self._entry(os.path.dirname(c), fullname)
                    for c in candidates
                    if c.count(os.sep) == depth
                }
            )
            if len(shallowest) > 1:
                raise SubmissionImportError(
                    f"import {fullname!r} in submission {self.root} is ambiguous: "
                    f"{', '.join(shallowest)} are at the same depth of its folder tree",
                    name=fullname,
                )
            return shallowest[0]
        return None

    def alias_spec(self, fullname: str, path: str) -> importlib.machinery.ModuleSpec:
        """A spec that gives ``fullname`` the one module object of the tree file ``path``."""
        if path == "":
            self._aliases.add(fullname)
            return importlib.machinery.ModuleSpec(fullname, _SyntheticLoader(), is_package=True)
        module = importlib.import_module(self._canonical_name(path))
        self._aliases.add(fullname)
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(module), is_package=hasattr(module, "__path__")
        )

    def child_spec(self, fullname: str) -> importlib.machinery.ModuleSpec | None:
        """A child of a module we imported under an alias name: the tree's child file."""
        parent, _, child = fullname.rpartition(".")
        if not parent or parent not in self._aliases:
            return None
        module = sys.modules.get(parent)
        for directory in getattr(module, "__path__", None) or []:
            path = self._entry(directory, child)
            if path is not None and path.startswith(self.root):
                return self.alias_spec(fullname, path)
        return None

    # ----------------------------------------------------------------- activation
    def _install_root_package(self) -> None:
        if self.package in sys.modules:
            return
        init = os.path.join(self.root, "__init__.py")
        if os.path.isfile(init):
            spec = importlib.util.spec_from_file_location(
                self.package, init, submodule_search_locations=[self.root]
            )
        else:
            spec = importlib.machinery.ModuleSpec(self.package, None, is_package=True)
            spec.submodule_search_locations = [self.root]
        module = importlib.util.module_from_spec(spec)
        sys.modules[self.package] = module
        try:
            if spec.loader is not None:
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[self.package]
            raise

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Resolve the submission's imports while the block runs; then forget its alias names."""
        self._depth += 1
        if self._depth == 1:
            sys.meta_path.insert(0, self._front)
            sys.meta_path.append(self._back)
        try:
            self._install_root_package()
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                for finder in (self._front, self._back):
                    with contextlib.suppress(ValueError):
                        sys.meta_path.remove(finder)
                for name in self._aliases:
                    sys.modules.pop(name, None)
                self._aliases.clear()

    def load(self, path: str) -> types.ModuleType:
        """Import the submission file ``path`` (inside the root) as a module of the tree."""
        path = os.path.abspath(path)
        stem = _canonical(os.path.splitext(os.path.basename(path))[0])
        name = f"{self.package}.{stem}"
        with self.active():
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            setattr(sys.modules[self.package], stem, module)
        return module

    # ----------------------------------------------------------------- errors
    def explain_missing(self, exc: ModuleNotFoundError) -> str:
        """One message for an import nothing resolved: what, where we looked, what to install."""
        missing = exc.name or str(exc)
        where = innermost_frame(exc, self.root)
        where = f"{where} " if where else ""
        head, parent, child = missing.split(".")[0], *missing.rpartition(".")[::2]
        try:
            in_tree = self.module_for(head) if parent else None
        except SubmissionImportError:
            in_tree = None
        if parent and parent in sys.modules:
            origin = getattr(sys.modules[parent], "__file__", None) or "a namespace package"
            looked = f"{parent!r} is installed ({origin}) but has no module {child!r}"
        elif in_tree:
            looked = f"{head!r} is {in_tree}, which has no {missing[len(head) + 1 :]!r}"
        else:
            looked = (
                f"it is neither installed nor a module or package in the submission's folder "
                f"tree: looked for {head}.py or {head}/ under {self.root}, and for a path "
                f"ending in .{self.folder_name}.<module>"
            )
        message = f"submission {self.root}: {where}imports {missing!r}, which is missing ({looked})"
        declared = find_declared_requirements(self.root)
        wanted = _requirement_for(missing, declared)
        if wanted is not None:
            spec_text, source = wanted
            message += (
                f". It declares {spec_text!r} in {source}, which is not installed here: "
                f"pip install '{_pip_form(spec_text)}'"
            )
        elif declared:
            sources = sorted({s for _, s in declared.values()})
            message += (
                f". Its declared requirements ({', '.join(sources)}) name no package providing "
                f"{missing.split('.')[0]!r}"
            )
        return message


class _FrontFinder(importlib.abc.MetaPathFinder):
    def __init__(self, owner: SubmissionImports) -> None:
        self.owner = owner

    def find_spec(self, fullname, path=None, target=None):
        return self.owner.child_spec(fullname)


class _BackFinder(importlib.abc.MetaPathFinder):
    def __init__(self, owner: SubmissionImports) -> None:
        self.owner = owner

    def find_spec(self, fullname, path=None, target=None):
        found = self.owner.module_for(fullname)
        if found is None:
            return None
        return self.owner.alias_spec(fullname, found)


def innermost_frame(exc: BaseException, root: str) -> str:
    """'<file>:<line>' of the innermost frame in ``root``'s tree in ``exc``'s traceback, or ''."""
    tb, found = exc.__traceback__, ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(root + os.sep):
            found = f"{os.path.relpath(filename, root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


# ------------------------------------------------------------------------ requirements
def requirement_files(folder: str) -> list[str]:
    """The requirement declarations of a submission: its folder and parents up to the root of
    the repository holding it (a folder with ``.git`` or ``pyproject.toml``), at most 3 up."""
    found, directory = [], os.path.abspath(folder)
    for _ in range(4):
        found += [
            os.path.join(directory, n)
            for n in REQUIREMENT_FILES
            if os.path.isfile(os.path.join(directory, n))
        ]
        if any(os.path.exists(os.path.join(directory, m)) for m in (".git", "pyproject.toml")):
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return found


def _parse_requirement_line(line: str) -> str | None:
    line = line.split("#", 1)[0].strip().lstrip("- ").strip()
    if not line or line.startswith(("-", "pip:")) or ":" in line.split("=")[0]:
        return None
    return line


def find_declared_requirements(folder: str) -> dict[str, tuple[str, str]]:
    """Normalized distribution name -> (requirement as written, file) for a submission.

    Reads pip requirement lines (``name==1.0``), conda ``list --export`` lines
    (``name=1.0=build``) and ``submission_info.yml`` files that are conda environments
    (``dependencies:`` with an optional ``pip:`` list) or name ``requirements:``.
    """
    declared: dict[str, tuple[str, str]] = {}
    for path in requirement_files(folder):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        entries: list[str] = []
        if path.endswith((".yml", ".yaml")):
            entries = _yaml_requirements(text)
        else:
            entries = [e for e in map(_parse_requirement_line, text.splitlines()) if e]
        rel = os.path.relpath(path, folder)
        for entry in entries:
            name = re.split(r"[=<>!~;\[ @]", entry, maxsplit=1)[0].strip()
            if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
                declared.setdefault(_norm(name), (entry, rel))
    return declared


def _yaml_requirements(text: str) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    if not isinstance(data, dict):
        return []
    out: list[str] = []
    for key in ("dependencies", "requirements"):
        items = data.get(key)
        if isinstance(items, str):
            items = items.split()
        for item in items if isinstance(items, list) else []:
            if isinstance(item, str):
                out.append(item.strip())
            elif isinstance(item, dict):
                for sub in item.values():
                    out += [s.strip() for s in sub or [] if isinstance(s, str)]
    return out


def _requirement_for(missing: str, declared: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    parts = missing.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        for candidate in (IMPORT_TO_DISTRIBUTION.get(name), name):
            if candidate and _norm(candidate) in declared:
                return declared[_norm(candidate)]
    return None


def _pip_form(requirement: str) -> str:
    """``name=1.0=build`` (conda) as ``name==1.0``; a pip requirement unchanged."""
    conda = re.fullmatch(r"([A-Za-z0-9._-]+)=([^=<>!~\s]+)(=\S+)?", requirement)
    if conda:
        return f"{conda.group(1)}=={conda.group(2)}"
    return requirement
