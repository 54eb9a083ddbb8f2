# Put on the path of programs run by `plumb run` (unless --no-locals).
# When a Python process of the run dies of an uncaught exception (in the
# main thread, another thread, a multiprocessing child or a pool task), it
# appends the traceback's frames with their local variables, each value's
# repr bounded in size and depth, as one JSON line to $PLUMB_POSTMORTEM_FILE.
# plumb reads the file when the run ends, redacts it like the environment,
# and keeps it with the run (`plumb show RUN --locals`).
#
# It changes nothing else: the program's own hooks still run (the main
# thread's exception is seen through the interpreter's audit event, which
# fires whoever set sys.excepthook), and the next sitecustomize on the path,
# if any, is still imported.

import os
import sys


def _plumb_install(path):
    # Only what hooking needs is imported here, at every Python start;
    # json and reprlib wait for an exception.
    import threading

    limits = []
    max_frames, max_locals, max_line = 40, 50, 256 * 1024
    # The exceptions recorded, kept alive so that a new one cannot take a
    # recorded one's id; bounded, since only the first few are kept anyway.
    seen = []
    own_file = os.path.abspath(__file__)

    def value_repr(v):
        if not limits:
            import reprlib

            r = reprlib.Repr()
            r.maxlevel = 3
            r.maxstring = 200
            r.maxother = 200
            r.maxlist = r.maxtuple = r.maxset = r.maxdict = 10
            limits.append(r)
        try:
            return limits[0].repr(v)
        except BaseException as e:  # a broken __repr__ must not hide the rest
            return "<repr failed: %s>" % type(e).__name__

    def frames_of(tb):
        frames = []
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename) != own_file:
                frames.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        omitted = max(0, len(frames) - max_frames)
        out = []
        for frame, line in frames[omitted:]:
            code = frame.f_code
            names = [n for n in frame.f_locals if not n.startswith("__")]
            loc = []
            for name in names[:max_locals]:
                try:
                    v = frame.f_locals[name]
                except Exception:
                    continue
                if type(v).__name__ in ("module", "function", "type", "builtin_function_or_method"):
                    continue
                loc.append({"name": name, "value": value_repr(v)})
            out.append({"file": code.co_filename, "line": line or 0,
                        "function": code.co_name, "locals": loc})
        return out, omitted

    def record(exc, tb, origin):
        try:
            import json

            if exc is None or isinstance(exc, (SystemExit, KeyboardInterrupt)):
                return
            if any(e is exc for e in seen) or len(seen) >= 64:
                return
            seen.append(exc)
            frames, omitted = frames_of(tb)
            kind = type(exc).__qualname__
            mod = type(exc).__module__
            if mod not in ("builtins", "__main__"):
                kind = mod + "." + kind
            try:
                message = str(exc)[:2000]
            except BaseException:
                message = "<str failed>"
            entry = {"pid": os.getpid(), "origin": origin, "kind": kind,
                     "message": message, "frames": frames, "frames_omitted": omitted}
            line = json.dumps(entry, ensure_ascii=True)
            while len(line) > max_line and entry["frames"]:
                for f in entry["frames"]:
                    f["locals"] = f["locals"][: len(f["locals"]) // 2]
                if all(not f["locals"] for f in entry["frames"]):
                    entry["frames"] = entry["frames"][-5:]
                line = json.dumps(entry, ensure_ascii=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except BaseException:
            pass  # recording must never change how the program dies

    def audit(event, args):
        if event == "sys.excepthook":
            _hook, _kind, value, tb = args
            record(value, tb, "main thread")

    if hasattr(sys, "addaudithook"):
        sys.addaudithook(audit)
    else:  # Python before 3.8: wrap the hook instead
        previous = sys.excepthook

        def excepthook(kind, value, tb):
            record(value, tb, "main thread")
            previous(kind, value, tb)

        sys.excepthook = excepthook

    if hasattr(threading, "excepthook"):
        previous_thread_hook = threading.excepthook

        def thread_hook(args):
            name = args.thread.name if args.thread is not None else "?"
            record(args.exc_value, args.exc_traceback, "thread " + name)
            previous_thread_hook(args)

        threading.excepthook = thread_hook

    def patch_process(module):
        base = module.BaseProcess
        run = base.run

        def plumb_run(self):
            try:
                return run(self)
            except BaseException as e:
                record(e, e.__traceback__, "process " + self.name)
                raise

        base.run = plumb_run

    def patch_pool(module):
        wrapped = getattr(module, "ExceptionWithTraceback", None)
        if wrapped is None:
            return
        init = wrapped.__init__

        def plumb_init(self, exc, tb):
            record(exc, tb, "pool worker")
            init(self, exc, tb)

        wrapped.__init__ = plumb_init

    patches = {"multiprocessing.process": patch_process, "multiprocessing.pool": patch_pool}
    for name in list(patches):
        if name in sys.modules:
            patches.pop(name)(sys.modules[name])
    if patches:
        _plumb_patch_on_import(patches)


def _plumb_patch_on_import(patches):
    # Patches modules when they are first imported, so a program that never
    # uses multiprocessing never pays for importing it.
    import importlib.machinery

    class Finder:
        def find_spec(self, name, path, target=None):
            if name not in patches:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            loader = spec.loader
            exec_module = loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                patch = patches.pop(name, None)
                if patch is not None:
                    try:
                        patch(module)
                    except Exception:
                        pass
                if not patches and self in sys.meta_path:
                    sys.meta_path.remove(self)

            loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, Finder())


def _plumb_chain():
    # The sitecustomize this one shadows (a distribution's or a virtualenv's).
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if os.environ.get("PLUMB_POSTMORTEM_FILE"):
    try:
        _plumb_install(os.environ["PLUMB_POSTMORTEM_FILE"])
    except Exception:
        pass
try:
    _plumb_chain()
except Exception:
    import traceback as _tb

    _tb.print_exc()
