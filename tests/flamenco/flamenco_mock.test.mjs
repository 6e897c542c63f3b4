// The mock of Flamenco Manager (flamenco_mock.mjs) against what Flamenco's Go source does, so that the job type's
// tests cannot pass on behaviour Flamenco does not have. The expected values come from Flamenco 3's source and its
// own unit tests (internal/manager/job_compilers/author.go, scripts.go, js_globals.go and js_globals_test.go,
// internal/manager/config/variables.go, pkg/crosspath).
// Run: node --test tests/flamenco/*.test.mjs

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
    EXAMPLE_VARIABLES,
    expandVariables,
    havePython,
    loadJobType,
    pythonSyntaxError,
    replaceTwoWayInSettings,
    toPlatform,
} from "./flamenco_mock.mjs";

/** Load a job type script given as text; `body` is the inside of compileJob(job). */
function script(body, prelude = "") {
    return loadJobType({ source: `${prelude}\nconst JOB_TYPE = {label: "t", settings: []};\n`
        + `function compileJob(job) {\n${body}\n}\n` });
}

const echo = `author.Command("echo", {message: "hi"})`;

describe("the mock's author API, as author.go", () => {
    it("stores a copy of a task on job.addTask: commands added afterwards are lost", () => {
        const job = script(`
            const task = author.Task("t", "misc");
            job.addTask(task);
            task.addCommand(${echo});
        `).compile({});
        assert.equal(job.tasks.length, 1);
        assert.deepEqual(job.tasks[0].commands, []);
    });

    it("stores a copy of a task on job.addTask: dependencies added afterwards are lost", () => {
        const job = script(`
            const first = author.Task("first", "misc");
            const second = author.Task("second", "misc");
            job.addTask(first);
            job.addTask(second);
            second.addDependency(first);
        `).compile({});
        assert.deepEqual(job.tasks[1].dependencies, []);
    });

    it("keeps what was added before job.addTask, with dependencies stored by task UUID", () => {
        const job = script(`
            const first = author.Task("first", "misc");
            first.addCommand(${echo});
            const second = author.Task("second", "misc");
            second.addCommand(author.Command("sleep", {duration_in_seconds: 1}, 3));
            second.addDependency(first);
            job.addTask(first);
            job.addTask(second);
        `).compile({});
        assert.deepEqual(job.tasks.map((t) => t.name), ["first", "second"]);
        assert.deepEqual(job.tasks[0].commands, [{name: "echo", parameters: {message: "hi"}, totalStepCount: 0}]);
        assert.deepEqual(job.tasks[1].dependencies, [job.tasks[0].uuid]);
        // persistence/jobs.go: a task's step total sums max(1, totalStepCount) over its commands.
        assert.deepEqual(job.tasks.map((t) => t.stepsTotal), [1, 3]);
        assert.equal(job.tasks[0].priority, 50);
    });

    it("refuses a job whose task depends on a task that was never added, as the Manager does when storing it", () => {
        const compiled = script(`
            const ghost = author.Task("ghost", "misc");
            const task = author.Task("t", "misc");
            task.addDependency(ghost);
            job.addTask(task);
        `);
        assert.throws(() => compiled.compile({}), /a task depends on a task that is not part of this job/);
    });

    it("reads a command's parameters when author.Command is called, not later", () => {
        const job = script(`
            const parameters = {args: ["a"]};
            const command = author.Command("exec", parameters);
            parameters.args.push("b");
            const task = author.Task("t", "misc");
            task.addCommand(command);
            job.addTask(task);
        `).compile({});
        assert.deepEqual(job.tasks[0].commands[0].parameters, {args: ["a"]});
    });

    it("refuses a task with no name or type, as author.Task does", () => {
        assert.throws(() => script(`author.Task(" ", "misc");`).compile({}), /name is required/);
        assert.throws(() => script(`author.Task("t", "");`).compile({}), /type is required/);
    });

    it("accepts only what author.Task and author.Command made", () => {
        assert.throws(() => script(`job.addTask({name: "t", type: "misc", commands: []});`).compile({}), /addTask/);
        assert.throws(
            () => script(`author.Task("t", "misc").addCommand({name: "echo", parameters: {}});`).compile({}),
            /addCommand/,
        );
    });
});

describe("the mock's runtime, as scripts.go", () => {
    it("runs scripts in strict mode: assigning an undeclared variable fails", () => {
        assert.throws(() => script(`undeclared = 1;`).compile({}), /undeclared is not defined/);
    });

    it("runs scripts in strict mode: sloppy-only syntax does not load", () => {
        assert.throws(() => script(`with (job) { print(name); }`), /Strict mode code may not include a with statement/);
    });

    for (const name of ["console", "require", "setTimeout", "Buffer", "structuredClone", "Intl", "WebAssembly"]) {
        it(`has no \`${name}\`, which Flamenco's runtime does not provide`, () => {
            assert.throws(() => script(`${name}.toString();`).compile({}), new RegExp(`${name} is not defined`));
        });
    }

    it("provides Flamenco's globals and modules", () => {
        const { compile, printed } = script(`
            const kinds = [typeof author.Task, typeof author.Command, typeof print, typeof alert,
                typeof frameChunker, typeof frameCount, typeof formatTimestampLocal, typeof shellSplit,
                typeof path.basename, typeof path.dirname, typeof path.join, typeof path.stem,
                typeof process.cwd, typeof process.platform];
            print(kinds.join(" "));
        `);
        compile({});
        assert.deepEqual(printed, [`${"function ".repeat(13)}string`]);
    });

    it("hands the script arrays and errors of its own realm, as goja does", () => {
        const { compile, printed } = script(`
            let caught = "nothing thrown";
            try { frameChunker("", 1); } catch (e) { caught = (e instanceof Error) + " " + e.name; }
            print(Array.isArray(frameChunker("1-3", 1)) && frameChunker("1-3", 1) instanceof Array, caught);
        `);
        compile({});
        assert.deepEqual(printed, ["true true GoError"]);
    });
});

describe("the mock's frameChunker and frameCount, as js_globals.go", () => {
    const { compile, printed } = script(`
        for (const [range, size] of job.settings.cases) {
            try {
                print(JSON.stringify([frameChunker(range, size), frameCount(range)]));
            } catch (e) {
                print("error: " + e.message);
            }
        }
    `);

    function run(...cases) {
        printed.length = 0;
        compile({cases});
        return printed.map((line) => (line.startsWith("error: ") ? line : JSON.parse(line)));
    }

    it("chunks Blender-style, regular and spaced ranges as Flamenco's own tests expect", () => {
        const expected = [["1-4", "5-8", "9,10,20,21", "22-25", "40"], 17];
        assert.deepEqual(run(["1..10,20..25,40,3..8", 4], ["1-10,20-25,40", 4], [" 1  .. 10,\t20..25\n,40   ", 4]),
            [expected, expected, expected]);
    });

    it("chunks one frame and one exact chunk", () => {
        assert.deepEqual(run(["47", 4], ["1-3", 3]), [[["47"], 1], [["1-3"], 3]]);
    });

    it("writes runs of two frames frame by frame, and sorts and merges overlapping parts", () => {
        assert.deepEqual(run(["5-6,1-3", 10], ["20-30,1-10,5", 100]), [[["1-3,5,6"], 5], [["1-10,20-30"], 21]]);
    });

    it("refuses an empty range, a bad part and a chunk size below 1", () => {
        const [empty, spaced, negative, size] = run(["   ", 4], [" 1 10", 4], ["-5-10", 4], ["1-10", 0]);
        assert.match(empty, /empty range/);
        assert.match(spaced, /1 10/);
        assert.match(negative, /invalid range/);
        assert.match(size, /invalid chunk size/);
    });
});

describe("the mock's other globals", () => {
    function evaluate(expression) {
        const { compile, printed } = script(`print(JSON.stringify(${expression}));`);
        compile({});
        return JSON.parse(printed[0]);
    }

    it("shellSplit splits as google/shlex does, and refuses an unclosed quote", () => {
        assert.deepEqual(evaluate(`shellSplit("--python-expr 'print(1 + 1)'")`), ["--python-expr", "print(1 + 1)"]);
        assert.deepEqual(
            evaluate(`shellSplit("-b  -y \\"a b\\"\\\\ c d\\\\ e # comment")`),
            ["-b", "-y", "a b c", "d e"],
        );
        assert.throws(() => evaluate(`shellSplit("--python-expr invalid_quoting(1 + 1)'")`), /closing quote/);
    });

    it("path works on slashes and backslashes alike, as crosspath does", () => {
        assert.deepEqual(
            evaluate(`[path.basename("C:\\\\render\\\\song.mp4"), path.dirname("/render/a/song.mp4"),
                path.join("/render", "a", "../b", "song.mp4"), path.stem("/render/song.flamenco.blend"),
                path.dirname("song.mp4"), path.basename("/render/")]`),
            ["song.mp4", "/render/a", "/render/b/song.mp4", "song.flamenco", ".", "render"],
        );
    });

    it("formatTimestampLocal writes the local time for file names", () => {
        const when = new Date(2024, 2, 5, 7, 8, 9);
        const { compile, printed } = script(`print(formatTimestampLocal(job.created));`);
        compile({}, {created: when});
        assert.deepEqual(printed, ["2024-03-05_070809"]);
    });
});

describe("the mock's variable replacement, as variables.go and crosspath", () => {
    it("turns a two-way path setting into its variable at submission, case-insensitively", () => {
        const settings = replaceTwoWayInSettings({video: "/Render/song/out.mp4", frames: "1-10", n: 3}, "linux");
        assert.deepEqual(settings, {video: "{render}/song/out.mp4", frames: "1-10", n: 3});
    });

    it("expands a two-way variable and converts the whole value to the Worker's platform", () => {
        assert.equal(expandVariables("{render}/song/out.mp4", "windows"), "R:\\song\\out.mp4");
        assert.equal(expandVariables("{render}/song/out.mp4", "linux"), "/render/song/out.mp4");
        // A value that starts with the Manager's own path is rewritten too.
        assert.equal(expandVariables("/shared/jobs/song/song.blend", "windows"), "S:\\jobs\\song\\song.blend");
        assert.equal(toPlatform("//bend\\a//b", "linux"), "//bend/a/b");
    });

    it("leaves a value with no two-way variable as it is, one-way variables expanded", () => {
        assert.equal(expandVariables("{blender}", "windows"), EXAMPLE_VARIABLES.oneWay.blender.windows);
        assert.equal(expandVariables("{blenderArgs}", "windows"), "-b -y");
        const python = "import sys; print(sys.argv[-1] // 2, 'a/b')";
        assert.equal(expandVariables(python, "windows"), python);
    });

    it("breaks Python source that holds a path variable on a Windows Worker (why paths travel as arguments)",
        {skip: !havePython() && "no python3 here"}, () => {
            const embedded = `import bpy; bpy.ops.bend.export_video(filepath="{render}/x/y.mp4")`;
            const expanded = expandVariables(embedded, "windows");
            assert.match(expanded, /R:\\x\\y\.mp4/);
            assert.equal(pythonSyntaxError(embedded), null);
            assert.match(pythonSyntaxError(expanded), /escape/);
        });
});
