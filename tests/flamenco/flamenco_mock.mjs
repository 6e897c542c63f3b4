// A stand-in for the parts of Flamenco Manager's job-compiler runtime that a job type script sees, for Node's test
// runner. Flamenco 3 runs job type scripts with goja in strict mode, as plain scripts (not modules), with these
// globals: `author` (author.Task(name, type), author.Command(name, parameters)), `print`, `alert`, `frameChunker`,
// `frameCount`, `formatTimestampLocal`, `shellSplit`, `path`, `process` (Flamenco's
// internal/manager/job_compilers/scripts.go). Only `author` and `print` are provided here, so a script that leans on
// anything else fails with a ReferenceError. Task and command objects mirror internal/manager/job_compilers/author.go
// (task methods are exposed to JavaScript with lower-case names: addCommand, addDependency, job.addTask).

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

export const JOB_TYPE_FILE = fileURLToPath(new URL("../../flamenco/diffusion_bender.js", import.meta.url));

function makeAuthor() {
    return {
        Task(name, type) {
            name = String(name).trim();
            type = String(type).trim();
            if (name === "") throw new Error("author.Task(name, type): name is required");
            if (type === "") throw new Error("author.Task(name, type): type is required");
            return {
                name,
                type,
                priority: 50,
                commands: [],
                dependencies: [],
                addCommand(command) {
                    this.commands.push(command);
                },
                addDependency(task) {
                    this.dependencies.push(task);
                },
            };
        },
        Command(name, parameters, totalStepCount = 0) {
            return { name, parameters, totalStepCount };
        },
    };
}

/** Load the job type script into a fresh sandbox; returns its JOB_TYPE, a compile function and what it printed. */
export function loadJobType(file = JOB_TYPE_FILE) {
    const source = readFileSync(file, "utf-8");
    const printed = [];
    const sandbox = {
        author: makeAuthor(),
        print: (...args) => printed.push(args.map(String).join(" ")),
    };
    const context = vm.createContext(sandbox);
    // goja compiles job type scripts in strict mode; the prefix keeps line numbers as they are in the file.
    vm.runInContext(`"use strict"; ${source}`, context, { filename: file });
    const JOB_TYPE = vm.runInContext("JOB_TYPE", context);
    const compileJob = vm.runInContext("compileJob", context);

    /** A job as Flamenco Manager hands it to compileJob(job): its settings, and addTask collecting the tasks. */
    function newJob(settings) {
        return {
            name: "test job",
            created: new Date(0),
            settings: { ...settings },
            metadata: {},
            tasks: [],
            addTask(task) {
                this.tasks.push(task);
            },
        };
    }

    /** Compile a job with these settings, as Flamenco Manager does on submission; returns the authored job. */
    function compile(settings, job = newJob(settings)) {
        compileJob(job);
        return job;
    }

    return { JOB_TYPE, compile, newJob, printed, context };
}

// Runs a task's --python-expr under plain Python with a stand-in `bpy` whose operators record their calls and
// return what `results` says ({"bend.render": "CANCELLED"}; "ERROR" raises RuntimeError, as bpy.ops does when an
// operator reports an error). An uncaught exception exits with 1, as Blender does with --python-exit-code 1.
const FAKE_BPY = `
import json, sys, types
expression, results = sys.argv[1], json.loads(sys.argv[2])
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
exec(compile(expression, "<python-expr>", "exec"), {"__name__": "__main__"})
`;

export const PYTHON = process.env.PYTHON || "python3";

/** Whether a Python interpreter is there to run expressions with. */
export function havePython() {
    return spawnSync(PYTHON, ["--version"]).status === 0;
}

/** Run the expression; returns its exit status and the operator calls it made, in order, as [name, kwargs]. */
export function runPythonExpression(expression, results = {}) {
    const run = spawnSync(PYTHON, ["-c", FAKE_BPY, expression, JSON.stringify(results)], { encoding: "utf-8" });
    if (run.error) throw run.error;
    const calls = run.stdout.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
    return { status: run.status, calls, stderr: run.stderr };
}
