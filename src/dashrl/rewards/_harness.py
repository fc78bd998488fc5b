"""Source of the trusted harness that `sandbox.run_tests` starts with `python -I -B -c HARNESS`.

It reads one JSON object from stdin (program, tests, nonce, fd, workdir, block_spawn), installs an
audit hook, runs the program, then the tests one top-level statement at a time, and writes
`<nonce> <passed> <total>` to the private pipe `fd`.

Counting checks (for partial credit): a *check* is a top-level statement of the test script that
tests something: `assert`, an expression (e.g. `check(candidate)`), `for`, `while`, `with`, `if`,
`try`. Other statements (imports, defs, assignments) are setup; if setup fails, the checks after
it count as failed. A script with no top-level check is one check (it passes if it runs to the
end). So `assert f(1) == 2; assert f(2) == 3` is 2 checks, while HumanEval's `check(candidate)`
and MBPP+'s `for ...: assertion(...)` loop are 1 check each (all or nothing).
"""

HARNESS = r"""
import ast, json, os, sys

def _main():
    data = json.loads(sys.stdin.read())
    nonce, fd, root, block_spawn = data["nonce"], data["fd"], data["workdir"], data["block_spawn"]
    program, tests = data["program"], data["tests"]
    del data
    root = os.path.normpath(root)

    def report(passed, total):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:
            os.write(fd, ("%s %d %d\n" % (nonce, passed, total)).encode())
        except BaseException:
            pass
        os._exit(0)

    def inside(path):
        if isinstance(path, int) or path is None:
            return True
        path = os.path.normpath(os.path.join(root, os.fsdecode(path)))
        return path == root or path.startswith(root + os.sep) or path == "/dev/null"

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    path_events = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                   "os.utime", "shutil.rmtree", "os.chdir", "os.mkfifo", "os.mknod"}
    two_path_events = {"os.rename", "os.replace"}
    net_events = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                  "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"}
    spawn_events = {"os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn",
                    "os.system", "subprocess.Popen", "pty.spawn"}
    me = os.getpid()

    def hook(event, args):
        if event == "open":
            if len(args) > 2 and isinstance(args[2], int) and args[2] & write_flags and not inside(args[0]):
                raise PermissionError("sandbox: writing outside the working directory")
        elif event in path_events:
            if args and not inside(args[0]):
                raise PermissionError("sandbox: " + event + " outside the working directory")
        elif event in two_path_events:
            if not (inside(args[0]) and inside(args[1])):
                raise PermissionError("sandbox: " + event + " outside the working directory")
        elif event in ("os.symlink", "os.link"):
            raise PermissionError("sandbox: links are not allowed")
        elif event in net_events:
            raise PermissionError("sandbox: no network")
        elif event in ("os.kill", "os.killpg"):
            if args[0] not in (0, me):
                raise PermissionError("sandbox: signals to other processes are not allowed")
        elif block_spawn and event in spawn_events:
            raise PermissionError("sandbox: process creation is not allowed")

    try:
        body = ast.parse(tests).body
    except BaseException:
        report(0, 1)
    check_types = (ast.Assert, ast.Expr, ast.For, ast.While, ast.With, ast.If, ast.Try)
    is_check = [isinstance(stmt, check_types) for stmt in body]
    total = sum(is_check) or 1
    codes = [compile(ast.Module(body=[stmt], type_ignores=[]), "<tests>", "exec") for stmt in body]
    del tests, body
    sys.addaudithook(hook)
    namespace = {"__name__": "__sandbox__", "__builtins__": __builtins__}
    try:
        exec(compile(program, "<program>", "exec"), namespace)
    except BaseException:
        report(0, total)
    del program
    passed = 0
    for code, check in zip(codes, is_check):
        try:
            exec(code, namespace)
        except BaseException:
            if not check:
                break
        else:
            passed += check
    else:
        if not any(is_check):
            passed = 1
    report(passed, total)

_main()
"""
