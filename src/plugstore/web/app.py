"""The console's pages: a Starlette app over one open sync store.

Handlers are plain functions, which Starlette runs on its thread pool, so the sync store
(thread-safe on every backend) serves them directly.  Every listing is read from the
store a page at a time (``keys_page``/``count`` with a prefix): a namespace of a million
keys is never loaded.  Templates are Jinja2 with autoescaping on: keys, namespaces and
values always render as text.

The pages show the store as a tool sees it (as ``plugstore ls`` does): every stored key,
scoped entries and the data version included, not only a plugin's plain keys.

Relational plugins' tables live in their own database, reached through a
:class:`~plugstore.relational.RelationalHost` given to :func:`create_app`: the plugins
page reads their revisions, and the users page runs their user-data hooks.  Nothing is
ever migrated from here.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import __version__, quarantine, userdata
from ..errors import InvalidKeyError, InvalidNamespaceError, StoreError
from ..keys import check_key, check_namespace
from ..scopekeys import META_LEAD, parse_path_prefix, parse_scoped_key, path_prefix
from ..store import Store
from .access import CSRF_FIELD, Access, guard, write_form
from .scopetree import subscopes
from .values import ValueTextError, parse, show

if TYPE_CHECKING:
    from ..relational import RelationalHost

HERE = Path(__file__).parent
#: Keys per page of a namespace.
PAGE = 100
#: Longest prefix a search takes (a key is at most this long anyway).
MAX_PREFIX = 1024


def _digest(raw: bytes) -> str:
    """What a page remembers of the value it showed, to detect a change on save."""
    return hashlib.sha256(raw).hexdigest()


def _key_url(namespace: str, key: str) -> str:
    return f"/ns/{_quote(namespace)}/key?{urlencode({'k': key})}"


def _quote(text: str) -> str:
    return quote(text, safe="")


_UNITS = ("kB", "MB", "GB", "TB", "PB")


def human_size(size: int) -> str:
    """``size`` bytes for a reader, in decimal units: ``"812 B"``, ``"1.2 MB"``."""
    if size < 1000:
        return f"{size} B"
    amount, unit = size / 1000, _UNITS[0]
    for bigger in _UNITS[1:]:
        if round(amount, 1) < 1000:  # 999,960 bytes read "1.0 MB", not "1000.0 kB"
            break
        amount, unit = amount / 1000, bigger
    return f"{amount:.1f} {unit}"


class Console:
    """The pages of one console run over ``store``.

    ``hooks`` are the key-value user-data hooks the users page runs (default: those
    installed under ``plugstore.user_data``); ``relational`` is the host of the
    relational plugins, whose hooks it also runs and whose revisions the plugins page
    shows (``None``: no relational plugins).
    """

    def __init__(
        self,
        store: Store,
        access: Access,
        *,
        hooks: Sequence[userdata.UserDataHook] | None = None,
        relational: RelationalHost | None = None,
    ) -> None:
        self.store = store
        self.access = access
        self.hooks = list(userdata.entry_point_hooks(store) if hooks is None else hooks)
        self.relational = relational
        # The host makes its engines on first use and is not meant to be shared by
        # threads; pages run on Starlette's thread pool, so its users take turns.
        self._tables_lock = threading.Lock()
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["q"] = _quote
        env.filters["size"] = human_size
        env.globals["key_url"] = _key_url
        self.templates = Jinja2Templates(env=env)

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(
            store_url=self.store.url,
            read_only=self.access.read_only,
            csrf_field=CSRF_FIELD,
            csrf=self.access.csrf,
        )
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    # -- reading ------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        info = self.store.info()
        durable = (
            "yes: a write is kept once it returns, even if this process is killed"
            if self.store.backend.durable
            else "no: the data lives in process memory and goes with it"
        )
        facts = [
            ("plugstore", f"{__version__}, Python {platform.python_version()}"),
            ("durable", durable),
            *sorted(info.items()),
        ]
        rows = []
        for name in self.store.namespaces():
            bucket = self.store.backend.bucket(name)
            rows.append((name, bucket.count(), bucket.stored_size()))
        # The bars stay by key count (what a plugin's growth shows first); the stored
        # size is a column beside it.
        rows.sort(key=lambda row: (-row[1], row[0]))
        largest = max((count for _, count, _ in rows), default=0)
        bars = [
            (name, count, size, 100 * count / largest if largest else 0.0)
            for name, count, size in rows
        ]
        return self.page(
            request,
            "overview.html",
            info=facts,
            namespaces=bars,
            total=sum(count for _, count, _ in rows),
            total_size=sum(size for _, _, size in rows),
        )

    def namespace(self, request: Request) -> Response:
        name = _namespace(request)
        prefix = request.query_params.get("prefix", "")
        after = request.query_params.get("after", "")
        if len(prefix) > MAX_PREFIX or len(after) > MAX_PREFIX:
            raise HTTPException(400, "prefix too long")
        bucket = self.store.backend.bucket(name)
        keys = (
            bucket.keys_after(prefix, after, PAGE + 1)
            if after
            else bucket.keys_page(prefix, PAGE + 1)
        )
        more = len(keys) > PAGE
        keys = keys[:PAGE]
        count = bucket.count(prefix)
        if not count and not prefix and name not in self.store.namespaces():
            raise HTTPException(404, f"no namespace {name!r} in this store")
        path = () if not prefix else parse_path_prefix(prefix)
        tree = None if path is None or after else subscopes(bucket, path)
        next_url = None
        if more:
            query = {"after": keys[-1], **({"prefix": prefix} if prefix else {})}
            next_url = f"/ns/{_quote(name)}?{urlencode(query)}"
        return self.page(
            request,
            "namespace.html",
            namespace=name,
            prefix=prefix,
            prefix_label=_prefix_label(prefix),
            keys=[_shown_key(key) for key in keys],
            version=self.store.namespace(name).data_version,
            count=count,
            after=after,
            next_url=next_url,
            pages=max(1, math.ceil(count / PAGE)),
            tree=tree,
        )

    def key(self, request: Request) -> Response:
        name = _namespace(request)
        key = _key(request.query_params.get("k"))
        if request.query_params.get("new") == "1":
            return self.page(request, "key.html", **self._key_context(name, key, None))
        entry = self.store.backend.bucket(name).get_with_deadline(key)
        if entry is None:
            raise HTTPException(404, f"no key {key!r} in namespace {name!r}")
        context = self._key_context(name, key, entry)
        if request.query_params.get("saved") == "1":
            context["notice"] = "Saved."
        return self.page(request, "key.html", **context)

    def _key_context(
        self,
        namespace: str,
        key: str,
        entry: tuple[bytes, float | None] | None,
        **extra: Any,
    ) -> dict[str, Any]:
        context: dict[str, Any] = {"namespace": namespace, "key": key, "entry": entry}
        if entry is None:
            context.update(shown=None, digest="", ttl=None, size=0)
        else:
            raw, deadline = entry
            ttl = None if deadline is None else max(0.0, deadline - self.store.clock())
            context.update(
                shown=show(self.store.codec, raw), digest=_digest(raw), ttl=ttl, size=len(raw)
            )
        context.update(error=None, draft=None, notice=None)
        context.update(extra)
        return context

    # -- writing ------------------------------------------------------------------------

    async def write(self, request: Request) -> Response:
        form = await write_form(self.access, request)
        name = _namespace(request)
        key = _key(_field(form.get("k")))
        action = _field(form.get("action"))
        if action not in ("save", "create", "delete", "expire", "persist"):
            raise HTTPException(400, f"unknown action {action!r}")
        # The store is sync: the write runs on Starlette's threads like the pages do.
        return await run_in_threadpool(self._write, request, name, key, action, form)

    def _write(self, request: Request, name: str, key: str, action: str, form: Any) -> Response:
        bucket = self.store.backend.bucket(name)
        ns = self.store.namespace(name)
        current = bucket.get_with_deadline(key)
        if action == "create":
            return self._create(request, ns, bucket, name, key, _field(form.get("value")))
        if current is None:
            return self.page(
                request,
                "key.html",
                status=409,
                **self._key_context(
                    name, key, None, notice="This key was deleted since you opened it."
                ),
            )
        raw, _ = current
        if _field(form.get("digest")) != _digest(raw):
            return self._changed(request, name, key, current, _field(form.get("value")))
        if action == "save":
            text = _field(form.get("value"))
            try:
                value = parse(text)
                new = ns._encode(value)
            except (ValueTextError, StoreError) as exc:
                return self._refused(request, name, key, current, text, str(exc))
            if not bucket.cas(key, raw, new):
                return self._changed(request, name, key, bucket.get_with_deadline(key), text)
            return RedirectResponse(_key_url(name, key) + "&saved=1", status_code=303)
        if action == "delete":
            if not bucket.cas(key, raw, None):
                return self._changed(request, name, key, bucket.get_with_deadline(key), None)
            return RedirectResponse(f"/ns/{_quote(name)}?deleted={_quote(key)}", status_code=303)
        if action == "expire":
            try:
                seconds = float(_field(form.get("ttl")))
                deadline = ns._deadline(seconds)
            except (ValueError, StoreError) as exc:
                reason = str(exc) if isinstance(exc, StoreError) else "not a number of seconds"
                return self._refused(request, name, key, current, None, f"TTL: {reason}")
            bucket.expire(key, deadline)
        else:
            bucket.persist(key)
        return RedirectResponse(_key_url(name, key), status_code=303)

    def _create(
        self, request: Request, ns: Any, bucket: Any, name: str, key: str, text: str
    ) -> Response:
        try:
            new = ns._encode(parse(text))
        except (ValueTextError, StoreError) as exc:
            context = self._key_context(name, key, None, error=str(exc), draft=text)
            return self.page(request, "key.html", status=400, **context)
        if not bucket.cas(key, None, new):
            return self._changed(request, name, key, bucket.get_with_deadline(key), text)
        return RedirectResponse(_key_url(name, key) + "&saved=1", status_code=303)

    def _changed(
        self,
        request: Request,
        name: str,
        key: str,
        now: tuple[bytes, float | None] | None,
        draft: str | None,
    ) -> Response:
        """409: another writer changed the value since the page showed it; the newer
        value is shown, and what the user typed is kept in the form."""
        notice = "Not saved: this value changed since you opened it. The newer value is shown"
        notice += "; your edit is kept below." if draft else "."
        context = self._key_context(name, key, now, notice=notice, draft=draft)
        return self.page(request, "key.html", status=409, **context)

    def _refused(
        self,
        request: Request,
        name: str,
        key: str,
        current: tuple[bytes, float | None],
        draft: str | None,
        reason: str,
    ) -> Response:
        context = self._key_context(name, key, current, error=reason, draft=draft)
        return self.page(request, "key.html", status=400, **context)

    # -- quarantine ---------------------------------------------------------------------

    def quarantined(self, request: Request) -> Response:
        listing = quarantine.entries(self.store)
        shown = [next(listing, None) for _ in range(PAGE + 1)]
        entries = [entry for entry in shown if entry is not None]
        return self.page(
            request,
            "quarantine.html",
            entries=entries[:PAGE],
            more=len(entries) > PAGE,
            done=request.query_params.get("done", ""),
        )

    async def quarantine_write(self, request: Request) -> Response:
        form = await write_form(self.access, request)
        record = _field(form.get("record"))
        action = _field(form.get("action"))
        if action not in ("restore", "discard"):
            raise HTTPException(400, f"unknown action {action!r}")
        return await run_in_threadpool(self._quarantine_write, request, record, action)

    def _quarantine_write(self, request: Request, record: str, action: str) -> Response:
        entry = quarantine.find(self.store, record) if record else None
        if entry is None:
            done = "gone"
        elif action == "discard":
            done = "discarded" if quarantine.discard(self.store, entry) else "gone"
        else:
            done = "restored" if quarantine.restore(self.store, entry) else "occupied"
        return RedirectResponse(f"/quarantine?{urlencode({'done': done})}", status_code=303)

    # -- users ----------------------------------------------------------------------------

    def user(self, request: Request) -> Response:
        who = request.query_params.get("user", "").strip()
        if not who:
            with self._tables_lock:
                names = [hook.name for hook in self._user_hooks()]
            return self.page(
                request, "user.html", user="", export=None, text="", erased=None, hooks=names
            )
        export, names = self._export(who)
        return self.page(
            request,
            "user.html",
            user=who,
            export=export,
            text=json.dumps(export, indent=2, ensure_ascii=False),
            erased=None,
            hooks=names,
        )

    def user_json(self, request: Request) -> Response:
        who = request.query_params.get("user", "").strip()
        if not who:
            raise HTTPException(400, "whose data? (?user=...)")
        body = json.dumps(self._export(who)[0], indent=2, ensure_ascii=False) + "\n"
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in who)[:64]
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="user-{name}.json"'},
        )

    def _user_hooks(self) -> list[userdata.UserDataHook]:
        """Every user-data hook, as ``plugstore user export`` runs them: the key-value
        ones and the relational plugins' (found anew each time: a plugin whose tables
        were made or upgraded since the console started is reached)."""
        if self.relational is None:
            return self.hooks
        return self.hooks + self.relational.user_data_hooks()

    def _export(self, who: str) -> tuple[dict[str, Any], list[str]]:
        """``who``'s export, and the names of the plugin hooks that were run."""
        with self._tables_lock:
            hooks = self._user_hooks()
            export = userdata.export_user(self.store, who, hooks=hooks)
        return export, [hook.name for hook in hooks]

    async def user_forget(self, request: Request) -> Response:
        form = await write_form(self.access, request)
        who = _field(form.get("user")).strip()
        if not who:
            raise HTTPException(400, "whose data? (user=...)")
        if _field(form.get("confirm")).strip() != who:
            export, names = await run_in_threadpool(self._export, who)
            return self.page(
                request,
                "user.html",
                status=400,
                user=who,
                export=export,
                text=json.dumps(export, indent=2, ensure_ascii=False),
                erased=None,
                hooks=names,
                error="Not erased: type the user's id again to confirm.",
            )
        summary, names = await run_in_threadpool(self._forget, who)
        return self.page(
            request, "user.html", user=who, export=None, text="", erased=summary, hooks=names
        )

    def _forget(self, who: str) -> tuple[str, list[str]]:
        """What erasing ``who`` did, and the names of the plugin hooks that were run."""
        with self._tables_lock:
            hooks = self._user_hooks()
            try:
                found = userdata.forget_user(self.store, who, hooks=hooks)
            except userdata.UserDataError as exc:
                return f"Partly erased: {exc}", [hook.name for hook in hooks]
        done = f"Erased {found.describe()}." if found.total else "There was nothing to erase."
        return done, [hook.name for hook in hooks]

    # -- relational plugins -------------------------------------------------------------

    def plugins(self, request: Request) -> Response:
        host = self.relational
        context: dict[str, Any] = {
            "host": host is not None,
            "database": str(host.url) if host else "",
            "masked": bool(host and host.url.render(mask=False) != str(host.url)),
            # on SQLite each plugin's schema is a file beside the database's
            "sqlite_files": (
                Path(host.database.file_for("pl_NAME")).name
                if host and host.kind == "sqlite" and host.database.path
                else ""
            ),
            "problems": host.problems if host else [],
            "rows": [],
            "behind": [],
            "pending": 0,
            "error": None,
        }
        if host is None or not host.plugins:
            return self.page(request, "plugins.html", **context)
        try:
            with self._tables_lock:
                rows = host.status()
        except StoreError as exc:  # the database cannot be reached: say so on this page
            context["error"] = str(exc)
            return self.page(request, "plugins.html", status=503, **context)
        except Exception as exc:  # a plugin's migrations cannot be read (Alembic's errors)
            context["error"] = f"cannot read the plugins' revisions: {_reason(exc)}"
            return self.page(request, "plugins.html", status=500, **context)
        context["rows"] = rows
        context["behind"] = [row.plugin for row in rows if row.pending]
        context["pending"] = sum(row.pending for row in rows)
        return self.page(request, "plugins.html", **context)


def _prefix_label(prefix: str) -> str:
    """A prefix as the page names it: a scope's as its path (``guild=1 / member=2``)."""
    path = parse_path_prefix(prefix)
    if path is None:
        return prefix
    return " / ".join(f"{level}={value!r}" for level, value in path)


def _shown_key(stored: str) -> dict[str, Any]:
    """How a stored key is listed: a plain key as it is; a scoped one as its scope path
    (each level a link to that scope's keys) and its key; a meta entry by what it is."""
    if stored.startswith(META_LEAD):
        return {"stored": stored, "scope": [], "key": stored[len(META_LEAD) :], "meta": True}
    try:
        parsed = parse_scoped_key(stored)
    except ValueError:
        parsed = None  # malformed: shown as stored
    if parsed is None:
        return {"stored": stored, "scope": [], "key": stored, "meta": False}
    path, key = parsed
    scope = [
        {"label": f"{level}={value!r}", "prefix": path_prefix(path[: i + 1])}
        for i, (level, value) in enumerate(path)
    ]
    return {"stored": stored, "scope": scope, "key": key, "meta": False}


def _namespace(request: Request) -> str:
    name = request.path_params["namespace"]
    try:
        return check_namespace(name)
    except InvalidNamespaceError as exc:
        raise HTTPException(404, str(exc)) from None


def _key(key: str | None) -> str:
    if not key:
        raise HTTPException(400, "which key? (?k=...)")
    try:
        return check_key(key)
    except InvalidKeyError as exc:
        raise HTTPException(400, str(exc)) from None


def _field(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _reason(exc: BaseException) -> str:
    """``exc`` in one line: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def create_app(
    store: Store,
    access: Access | None = None,
    *,
    hooks: Sequence[userdata.UserDataHook] | None = None,
    relational: RelationalHost | None = None,
) -> Starlette:
    """The console's ASGI app over the open ``store`` (closed by whoever opened it).

    ``hooks``: the key-value user-data hooks the users page runs on export and erase
    (default: :func:`~plugstore.userdata.entry_point_hooks`; ``plugstore web`` passes
    what ``plugstore user`` finds).  ``relational``: the (unstarted)
    :class:`~plugstore.relational.RelationalHost` of the relational plugins, on their
    tables database: the plugins page shows its plugins' revisions, and their
    user-data hooks join the users page's.  Whoever made it closes it.
    """
    access = access or Access()
    console = Console(store, access, hooks=hooks, relational=relational)

    async def guarded(request: Request, call_next: Any) -> Response:
        return await guard(access, request, call_next)

    async def store_error(request: Request, exc: Exception) -> Response:
        return HTMLResponse(
            console.templates.get_template("message.html").render(
                title="The store refused",
                message=str(exc),
                store_url=store.url,
                read_only=access.read_only,  # base.html's header shows it
            ),
            status_code=503,
        )

    app = Starlette(
        routes=[
            Route("/", console.overview),
            Route("/ns/{namespace}", console.namespace),
            Route("/ns/{namespace}/key", console.key),
            Route("/ns/{namespace}/key", console.write, methods=["POST"]),
            Route("/quarantine", console.quarantined),
            Route("/users", console.user),
            Route("/users/export.json", console.user_json),
            Route("/users/forget", console.user_forget, methods=["POST"]),
            Route("/plugins", console.plugins),
            Route("/quarantine", console.quarantine_write, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=guarded)],
        exception_handlers={StoreError: store_error},
    )
    app.state.access = access
    return app


__all__ = ["PAGE", "Console", "create_app"]
