"""Reading and writing a run's files: JSON replaced atomically, CSV tables grown row by row, both checked.

Every file is replaced atomically, so a reader (the dashboard) never sees half a file; each one read is
checked whole against its shape in :mod:`segcore.runs.schemas`, so that a file of the wrong shape is one
SegcoreError naming the file and the field, never a traceback on a page.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from segcore import atomic
from segcore.errors import SegcoreError, json_problem
from segcore.runs import schemas


def write_json(path: str | Path, content: Any) -> None:
    """Atomically write ``content`` as indented JSON."""
    atomic.write_text(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


#: JSON's names for what json.loads returns, for messages.
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def read_json(path: Path, *, missing: str, damaged: str, expect: type = dict) -> Any:
    """A JSON file segcore wrote, whose top level is ``expect`` (an object, or a list for predictions);
    ``missing`` ("<folder> ...") and ``damaged`` ("<file> is not valid JSON; ...") finish the error sentence
    for those cases."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise SegcoreError(f"{path.parent} {missing}") from None
    except (OSError, ValueError, RecursionError) as error:  # also a number too long, or JSON nested too deep
        raise SegcoreError(f"{path} {json_problem(error)}; {damaged}") from None
    if not isinstance(content, expect):
        raise SegcoreError(f"{path} holds {_JSON_TYPES.get(type(content), 'JSON')} where segcore writes "
                           f"{_JSON_TYPES[expect]}; {damaged}")
    return content


def stamp(*paths: str | Path) -> tuple:
    """Modification times (ns) of ``paths``, None for a missing one: a cache key that changes when a file
    is rewritten (files here are replaced atomically, so a new file means a new time)."""
    out = []
    for path in paths:
        try:
            out.append(Path(path).stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


def read_table(path: str | Path, contract: schemas.Table | None = None):
    """A CSV file of a run or an eval folder as a pandas DataFrame, checked against ``contract`` where given
    (:mod:`segcore.runs.schemas`); an empty one for a missing file.

    pandas is imported here, not at the top, so the command line starts without it.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    remedy = contract.remedy if contract is not None else "evaluate or train the run again."
    try:
        if contract is not None and contract.grows:  # a row being written is not read
            text = path.read_bytes()
            table = pd.read_csv(io.BytesIO(text[:text.rfind(b"\n") + 1]))
        else:
            table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        said = " ".join(str(error).split())  # pandas ends some of its messages with a line end
        raise SegcoreError(f"{path} is not a readable CSV table ({said}); {remedy}") from None
    return contract.check(path, table) if contract is not None else table


class CsvLog:
    """A CSV table that grows by one row per logged step; its columns are the first row's, widened (the
    file rewritten atomically) when a later row brings new ones, e.g. a run resumed by a newer segcore.

    Rows are appended and flushed one line at a time, as a training log is (a reader may at worst see
    the last line cut short). On resume the file is first rewritten, atomically, without the rows past
    the resumed iteration, so that no step is logged twice.
    """

    def __init__(self, path: str | Path, *, keep_until_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        if keep_until_iteration is None or not self.path.exists():
            self.path.unlink(missing_ok=True)
            return
        with self.path.open(newline="") as file:
            reader = csv.DictReader(file)
            # a row cut short (a full disk, a power cut) has missing cells, one of extra cells a None key
            kept = [r for r in reader if None not in r and None not in r.values()
                    and r.get("iteration", "").isdigit() and int(r["iteration"]) <= keep_until_iteration]
            self.columns = reader.fieldnames
        if not self.columns:
            self.path.unlink()
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic.write_text(self.path, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; a column it lacks stays empty in it."""
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        elif not set(row) <= set(self.columns):
            self._widen([key for key in row if key not in self.columns])
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.columns, lineterminator="\n")
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def _widen(self, added: list[str]) -> None:
        with self.path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        self.columns = [*self.columns, *added]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(self.path, buffer.getvalue())
