// A stand-in for Flamenco Manager's job-compiler runtime and for what happens to a job's commands after it, for
// Node's test runner. It follows Flamenco 3's Go source (projects.blender.org/studio/flamenco); this file is our
// own code, written from what that source does:
//
// - internal/manager/job_compilers/scripts.go: scripts are compiled with goja in strict mode as plain scripts, with
//   the globals `print`, `alert`, `frameChunker`, `frameCount`, `formatTimestampLocal`, `shellSplit`, and the
//   modules `author`, `path`, `process`. Nothing else: no `console`, no `require` for the script's own use.
// - internal/manager/job_compilers/author.go: `author.Task` and `author.Command` build Go structs; Go methods and
//   fields reach JavaScript with a lower-case first letter (goja's UncapFieldNameMapper). `job.addTask(task)` appends
//   a COPY of the task (`*at`), so commands or dependencies added to the task afterwards are lost;
//   `task.addCommand(cmd)` appends a copy of the command; `task.addDependency(dep)` keeps a pointer to `dep`.
//   `author.Command(name, parameters, totalStepCount)` converts the parameters to a Go map at the call.
// - internal/manager/job_compilers/js_globals.go: frameChunker / frameCount (frame ranges "1-10,20..25,40").
// - internal/manager/persistence/jobs.go: a task's dependencies are looked up by UUID among the job's tasks (a
//   dependency that is not one of them fails the job); a task's step total is the sum over its commands of
//   max(1, totalStepCount).
// - internal/manager/api_impl/varrepl.go, internal/manager/config/variables.go, pkg/crosspath: variable
//   replacement, both at submission (a path setting that starts with a two-way variable's value becomes
//   "{variable}/rest") and when a task goes to a Worker (every string parameter, and every string in a list
//   parameter, is expanded; one that held a two-way variable is then treated as a path and ALL its slashes and
//   backslashes are converted for the Worker's platform).

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

export const JOB_TYPE_FILE = fileURLToPath(new URL("../../flamenco/diffusion_bender.js", import.meta.url));

// What a Go function that returns an error becomes in goja: a thrown Error named GoError.
function goError(message) {
    const error = new Error(message);
    error.name = "GoError";
    return error;
}

// ---------------------------------------------------------------------------------------------------- author

function makeAuthor() {
    const tasks = new WeakSet();
    const commands = new WeakSet();

    function Task(name, type) {
        name = String(name).trim();
        type = String(type).trim();
        if (name === "") throw goError("author.Task(name, type): name is required");
        if (type === "") throw goError("author.Task(name, type): type is required");
        const task = {
            uuid: randomUUID(),
            name,
            type,
            priority: 50,
            commands: [],
            dependencies: [],
            addCommand(command) {
                if (!commands.has(command)) throw new TypeError("addCommand: expects a command from author.Command");
                // `*ac`: the task keeps its own command record, which shares the parameters map.
                this.commands.push({ ...command });
            },
            addDependency(dependency) {
                if (!tasks.has(dependency)) throw new TypeError("addDependency: expects a task from author.Task");
                this.dependencies.push(dependency);
            },
        };
        tasks.add(task);
        return task;
    }

    function Command(name, parameters, totalStepCount) {
        // goja gives 0 for a missing argument, which the Worker reads as "this command has no steps". Anything but
        // a whole number is refused here: the mock does not guess how goja would convert it.
        if (totalStepCount === undefined) totalStepCount = 0;
        if (!Number.isSafeInteger(totalStepCount) || totalStepCount < 0) {
            throw new TypeError(`author.Command: totalStepCount must be a whole number, got ${totalStepCount}`);
        }
        // The parameters become a Go map when the call is made: later changes to the script's object are not seen.
        const command = { name: String(name), parameters: JSON.parse(JSON.stringify(parameters)), totalStepCount };
        commands.add(command);
        return command;
    }

    return { author: { Task, Command }, isTask: (value) => tasks.has(value) };
}

// -------------------------------------------------------------------------------------------- frame ranges

const MAX_INT64 = 2n ** 63n - 1n;

function parseFrame(text, frameRange, part) {
    // strconv.ParseInt(strings.TrimSpace(s), 10, 64): an optional sign, then decimal digits.
    const trimmed = text.trim();
    if (!/^[+-]?\d+$/.test(trimmed)) {
        const cause = `strconv.ParseInt: parsing "${trimmed}": invalid syntax`;
        throw goError(`invalid range "${frameRange}":  ${part} (${cause})`);
    }
    const big = BigInt(trimmed);
    if (big > MAX_INT64 || big < -MAX_INT64 - 1n || !Number.isSafeInteger(Number(big))) {
        throw goError(`invalid range "${frameRange}":  ${part} (value out of range)`);
    }
    return Number(big);
}

/** Every frame of a range such as "1..10,20-25,40", sorted, each once (frameRangeExplode). */
function explodeFrames(frameRange) {
    const text = String(frameRange).replaceAll("..", "-");
    const frames = new Set();
    for (const part of text.split(",")) {
        const ends = part.split("-");
        if (ends.length === 1) {
            frames.add(parseFrame(ends[0], text, part));
        } else if (ends.length === 2) {
            const first = parseFrame(ends[0], text, part);
            const last = parseFrame(ends[1], text, part);
            for (let frame = first; frame <= last; frame++) frames.add(frame);
        } else {
            throw goError(`invalid range "${text}": ${part}`);
        }
    }
    return [...frames].sort((a, b) => a - b);
}

/** Sorted frames written as ranges: a run of three or more as "A-B", shorter runs frame by frame (frameRangeMerge). */
function mergeFrames(frames) {
    const parts = [];
    let start = frames[0];
    for (let i = 1; i <= frames.length; i++) {
        if (i < frames.length && frames[i] === frames[i - 1] + 1) continue;
        const end = frames[i - 1];
        if (end - start >= 2) parts.push(`${start}-${end}`);
        else for (let f = start; f <= end; f++) parts.push(String(f));
        start = frames[i];
    }
    return parts.join(",");
}

function frameChunker(frameRange, chunkSize) {
    const text = String(frameRange).trim();
    if (text === "") throw goError(`invalid range "${text}": empty range`);
    if (!(chunkSize >= 1)) throw goError(`invalid chunk size, must be positive number: ${chunkSize}`);
    const size = Math.trunc(chunkSize);
    const frames = explodeFrames(text);
    if (frames.length === 0) throw goError(`invalid range "${text}": empty range`);
    const chunks = [];
    for (let i = 0; i < frames.length; i += size) chunks.push(mergeFrames(frames.slice(i, i + size)));
    return chunks;
}

function frameCount(frameRange) {
    return explodeFrames(frameRange).length;
}

// ---------------------------------------------------------------------------------- the other globals

/** google/shlex's Split, which shellSplit wraps: whitespace-separated words, quotes, backslash escapes, # comments. */
function shellSplit(text) {
    const words = [];
    let word = null;
    let state = "start";
    for (const ch of String(text)) {
        const space = ch === " " || ch === "\t" || ch === "\r" || ch === "\n";
        switch (state) {
            case "start":
            case "word":
                if (space) {
                    if (state === "word") words.push(word);
                    state = "start";
                } else if (state === "start" && ch === "#") {
                    state = "comment";
                } else {
                    if (state === "start") word = "";
                    state = "word";
                    if (ch === '"') state = "double";
                    else if (ch === "'") state = "single";
                    else if (ch === "\\") state = "escape";
                    else word += ch;
                }
                break;
            case "escape":
                word += ch;
                state = "word";
                break;
            case "double":
                if (ch === '"') state = "word";
                else if (ch === "\\") state = "double-escape";
                else word += ch;
                break;
            case "double-escape":
                word += ch;
                state = "double";
                break;
            case "single":
                if (ch === "'") state = "word";
                else word += ch;
                break;
            case "comment":
                if (ch === "\n") state = "start";
                break;
        }
    }
    if (state === "escape" || state === "double-escape") throw goError("EOF found after escape character");
    if (state === "double" || state === "single") throw goError("EOF found when expecting closing quote");
    if (state === "word") words.push(word);
    return words;
}

function formatTimestampLocal(date) {
    const pad = (n) => String(n).padStart(2, "0");
    const d = new Date(date);
    return (
        `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}_` +
        `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`
    );
}

const toSlash = (p) => String(p).replaceAll("\\", "/");

/** Go's path.Clean. */
function cleanPath(p) {
    if (p === "") return ".";
    const rooted = p.startsWith("/");
    const out = [];
    for (const element of p.split("/")) {
        if (element === "" || element === ".") continue;
        if (element === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
        else if (element === ".." && rooted) continue;
        else out.push(element);
    }
    const joined = out.join("/");
    return rooted ? `/${joined}` : joined || ".";
}

/** Go's path.Base on the path with backslashes made slashes (crosspath.Base). */
function basename(p) {
    const slashed = toSlash(p);
    if (slashed === "") return ".";
    const trimmed = slashed.replace(/\/+$/, "");
    if (trimmed === "") return "/";
    return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

const pathModule = {
    basename,
    dirname(p) {
        if (p === "") return ".";
        const slashed = toSlash(p);
        const dir = slashed.slice(0, slashed.lastIndexOf("/") + 1);
        if (dir === "") return ".";
        return dir.length > 1 ? dir.slice(0, -1) : dir;
    },
    join(...elements) {
        const parts = elements.map(String).filter((e) => e !== "");
        return parts.length === 0 ? "" : toSlash(cleanPath(parts.join("/")));
    },
    stem(p) {
        const base = basename(p);
        const dot = base.lastIndexOf(".");
        return dot < 0 ? base : base.slice(0, dot);
    },
};

const processModule = {
    cwd: () => process.cwd(),
    // Go's runtime.GOOS, which names Windows "windows" where Node says "win32".
    platform: process.platform === "win32" ? "windows" : process.platform,
};

// Node puts these into every vm context; goja (ECMAScript 5.1 and most of ES6) has none of them, and Flamenco
// enables no console. Removed so that a script leaning on them fails here as it would in Flamenco.
const NOT_IN_GOJA = [
    "console", "Intl", "WebAssembly", "SharedArrayBuffer", "Atomics", "WeakRef", "FinalizationRegistry",
];

// ------------------------------------------------------------------------------------------------ loading

/**
 * Load a job type script as Flamenco Manager does: a fresh runtime, strict mode, Flamenco's globals and no others.
 * Returns its JOB_TYPE, `compile(settings)` and what it printed (print and alert).
 */
export function loadJobType({ file = JOB_TYPE_FILE, source = readFileSync(file, "utf-8") } = {}) {
    const printed = [];
    const { author, isTask } = makeAuthor();
    const context = vm.createContext({});
    vm.runInContext(`for (const name of ${JSON.stringify(NOT_IN_GOJA)}) delete globalThis[name];`, context);
    // Values cross into the script's realm as the script's own, so `instanceof Array` and `instanceof Error` hold
    // there as they do for what goja hands a script (a Go error arrives as an Error named GoError).
    const [ScriptError, scriptArray] = vm.runInContext("[Error, Array.from]", context);
    const native = (fn) => (...args) => {
        try {
            const result = fn(...args);
            return Array.isArray(result) ? scriptArray(result) : result;
        } catch (error) {
            const thrown = new ScriptError(error.message);
            thrown.name = error.name;
            throw thrown;
        }
    };
    const module = (object) => Object.fromEntries(
        Object.entries(object).map(([key, value]) => [key, typeof value === "function" ? native(value) : value]));
    Object.assign(vm.runInContext("globalThis", context), {
        author: module(author),
        print: (...args) => printed.push(args.map(String).join(" ")),
        alert: (...args) => printed.push(`alert: ${args.map(String).join(" ")}`),
        frameChunker: native(frameChunker),
        frameCount: native(frameCount),
        formatTimestampLocal: native(formatTimestampLocal),
        shellSplit: native(shellSplit),
        path: module(pathModule),
        process: module(processModule),
    });
    // goja.Compile(filename, source, true): strict mode. The prefix keeps line numbers as they are in the file.
    vm.runInContext(`"use strict"; ${source}`, context, { filename: file });
    const JOB_TYPE = vm.runInContext("typeof JOB_TYPE === 'undefined' ? undefined : JOB_TYPE", context);
    const compileJob = vm.runInContext("typeof compileJob === 'undefined' ? undefined : compileJob", context);
    if (typeof compileJob !== "function") throw new Error(`${file} does not define a compileJob(job) function`);

    /**
     * Compile a job with these settings as Flamenco Manager does on submission, then store it as the Manager does.
     * Returns the stored job: tasks in order, each {uuid, name, type, priority, commands, dependencies (UUIDs),
     * stepsTotal}, commands as plain JSON data.
     */
    function compile(settings, { name = "test job", created = new Date(0) } = {}) {
        const job = {
            jobID: randomUUID(),
            name,
            created,
            settings: { ...settings },
            metadata: {},
            tasks: [],
            addTask(task) {
                if (!isTask(task)) throw new TypeError("addTask: expects a task from author.Task");
                // aj.Tasks = append(aj.Tasks, *at): a copy. Its lists are fixed now; the task's later additions
                // go to the task the script holds, not to this one.
                this.tasks.push({ ...task, commands: [...task.commands], dependencies: [...task.dependencies] });
            },
        };
        compileJob(job);
        return store(job);
    }

    return { JOB_TYPE, compile, printed };
}

function store(job) {
    const uuids = new Set(job.tasks.map((t) => t.uuid));
    return {
        name: job.name,
        settings: job.settings,
        tasks: job.tasks.map((task) => {
            for (const dependency of task.dependencies) {
                if (!uuids.has(dependency.uuid)) {
                    throw new Error(
                        `finding task with UUID "${dependency.uuid}" (${dependency.name}); a task depends on a task ` +
                            "that is not part of this job",
                    );
                }
            }
            return {
                uuid: task.uuid,
                name: task.name,
                type: task.type,
                priority: task.priority,
                commands: JSON.parse(JSON.stringify(task.commands.map(({ name, parameters, totalStepCount }) =>
                    ({ name, parameters, totalStepCount })))),
                dependencies: task.dependencies.map((d) => d.uuid),
                stepsTotal: task.commands.reduce((sum, c) => sum + Math.max(1, c.totalStepCount), 0),
            };
        }),
    };
}

// ------------------------------------------------------------------------------------ variable replacement

/**
 * Flamenco's variables, as in flamenco-manager.yaml: `oneWay` and `twoWay` map a name to {platform: value}
 * ("all" for every platform), as the Manager resolves them for the Workers' audience.
 */
export const EXAMPLE_VARIABLES = {
    managerPlatform: "linux",
    oneWay: {
        blender: { linux: "/opt/blender/blender", windows: "C:\\Program Files\\Blender\\blender.exe" },
        blenderArgs: { all: "-b -y" },
    },
    twoWay: {
        render: { linux: "/render", windows: "R:\\" },
        jobs: { linux: "/shared/jobs", windows: "S:\\jobs" },
    },
};

function valueFor(variable, platform) {
    return variable[platform] ?? variable.all;
}

function isPathSep(ch) {
    return ch === "/" || ch === "\\";
}

/** crosspath.EnsureDriveAbsolute: "F:path" becomes "F:\\path". */
function ensureDriveAbsolute(p) {
    if (!/^[A-Za-z]:/.test(p)) return p;
    if (p.length === 2) return `${p}\\`;
    return p[2] === "\\" ? p : `${p.slice(0, 2)}\\${p.slice(2)}`;
}

/** crosspath.ToPlatform: every slash and backslash becomes the platform's separator, repeats collapsed. */
export function toPlatform(p, platform) {
    if (p === "") return "";
    let leading = 0;
    while (leading < p.length && isPathSep(p[leading])) leading++;
    const components = [...Array(leading).fill(""), ...p.split(/[/\\]/).filter((c) => c !== "")];
    const translated = components.join(platform === "windows" ? "\\" : "/");
    return platform === "windows" ? ensureDriveAbsolute(translated) : translated;
}

function startsWithValue(value, variableValue) {
    // isValueMatch: a plain prefix, or one once both are written with forward slashes.
    return value.startsWith(variableValue) || toSlash(value).startsWith(toSlash(variableValue));
}

/** VariableExpander.Expand for one string, as the Manager does for a task assigned to a Worker on `platform`. */
export function expandVariables(value, platform, variables = EXAMPLE_VARIABLES) {
    let expanded = value;
    for (const [name, variable] of Object.entries(variables.oneWay)) {
        const replacement = valueFor(variable, platform);
        if (replacement !== undefined) expanded = expanded.replaceAll(`{${name}}`, replacement);
    }
    let isPath = false;
    for (const [name, variable] of Object.entries(variables.twoWay)) {
        const target = valueFor(variable, platform);
        if (target === undefined || !expanded.includes(`{${name}}`)) continue;
        expanded = expanded.replaceAll(`{${name}}`, target);
        isPath = true;
    }
    for (const variable of Object.values(variables.twoWay)) {
        const managerValue = valueFor(variable, variables.managerPlatform);
        const target = valueFor(variable, platform);
        if (managerValue === undefined || target === undefined || !startsWithValue(expanded, managerValue)) continue;
        expanded = target + expanded.slice(managerValue.length);
        if (platform === "windows") expanded = ensureDriveAbsolute(expanded);
        isPath = true;
    }
    return isPath ? toPlatform(expanded, platform) : expanded;
}

/** replaceTaskVariables: every string parameter and every string in a list parameter, expanded for `platform`. */
export function expandCommandForWorker(parameters, platform, variables = EXAMPLE_VARIABLES) {
    const expanded = {};
    for (const [key, value] of Object.entries(parameters)) {
        if (typeof value === "string") expanded[key] = expandVariables(value, platform, variables);
        else if (Array.isArray(value)) {
            expanded[key] = value.map((v) => (typeof v === "string" ? expandVariables(v, platform, variables) : v));
        } else expanded[key] = value;
    }
    return expanded;
}

/** replaceTwoWayVariables at submission: a string setting that starts with a two-way value becomes "{name}rest". */
export function replaceTwoWayInSettings(settings, submitterPlatform, variables = EXAMPLE_VARIABLES) {
    const replaced = { ...settings };
    for (const [key, value] of Object.entries(settings)) {
        if (typeof value !== "string") continue;
        let result = value;
        for (const [name, variable] of Object.entries(variables.twoWay)) {
            const varValue = valueFor(variable, submitterPlatform);
            if (varValue === undefined) continue;
            if (!startsWithValue(result.toLowerCase(), varValue.toLowerCase())) continue;
            result = `{${name}}${result.slice(varValue.length)}`;
        }
        replaced[key] = result;
    }
    return replaced;
}

// ------------------------------------------------------------------------------------ running the commands

/** The command line a Worker runs for a blender-render command (cmdBlenderRenderCommand), after expansion. */
export function blenderCommandLine(parameters) {
    return [
        parameters.exe,
        ...shellSplit(parameters.exeArgs ?? ""),
        ...parameters.argsBefore,
        ...(parameters.blendfile === "" ? [] : [parameters.blendfile]),
        ...parameters.args,
    ];
}

// Runs a command's --python-expr under plain Python with sys.argv set to the Blender command line (Blender's own
// sys.argv holds every argument, those after "--" included) and a stand-in `bpy` whose operators record their
// calls and return what `results` says ({"bend.render": "CANCELLED"}; "ERROR" raises RuntimeError, as bpy.ops does
// when an operator reports an error). An uncaught exception exits with 1, as Blender does with --python-exit-code 1.
const FAKE_BLENDER = `
import json, sys, types
argv, results = json.loads(sys.argv[1]), json.loads(sys.argv[2])
expression = argv[argv.index("--python-expr") + 1]
def operator(name):
    def call(**kwargs):
        print(json.dumps([name, kwargs]), flush=True)
        result = results.get(name, "FINISHED")
        if result == "ERROR":
            raise RuntimeError("Error: " + name + " failed")
        return {result}
    return call
bpy = types.ModuleType("bpy")
bpy.ops = types.SimpleNamespace(
    bend=types.SimpleNamespace(render=operator("bend.render"), export_video=operator("bend.export_video")),
    wm=types.SimpleNamespace(save_mainfile=operator("wm.save_mainfile")),
)
sys.modules["bpy"] = bpy
sys.argv = argv
exec(compile(expression, "<python-expr>", "exec"), {"__name__": "__main__"})
`;

export const PYTHON = process.env.PYTHON || "python3";

/** Whether a Python interpreter is there to run expressions with. */
export function havePython() {
    return spawnSync(PYTHON, ["--version"]).status === 0;
}

/** Run a command as a Worker would; returns its exit status and the operator calls it made, as [name, kwargs]. */
export function runBlenderCommand(parameters, results = {}) {
    const argv = blenderCommandLine(parameters);
    const run = spawnSync(PYTHON, ["-c", FAKE_BLENDER, JSON.stringify(argv), JSON.stringify(results)], {
        encoding: "utf-8",
    });
    if (run.error) throw run.error;
    const calls = run.stdout.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
    return { status: run.status, calls, stderr: run.stderr };
}

/** Whether Python parses the text; returns null when it does, else the SyntaxError's message. */
export function pythonSyntaxError(source) {
    const check = "import ast, sys\ntry:\n    ast.parse(sys.argv[1])\nexcept SyntaxError as e:\n    print(e.msg)";
    const run = spawnSync(PYTHON, ["-c", check, source], { encoding: "utf-8" });
    if (run.error) throw run.error;
    if (run.status !== 0) throw new Error(run.stderr);
    return run.stdout.trim() === "" ? null : run.stdout.trim();
}
