// The Flamenco job type (flamenco/diffusion_bender.js) against a mock of Flamenco Manager (flamenco_mock.mjs, itself
// checked against Flamenco's source in flamenco_mock.test.mjs): how a render splits into tasks, what each task runs
// on a Worker after Flamenco's variable replacement, and what the Python it runs does with a stand-in bpy.
// Run: node --test tests/flamenco/*.test.mjs

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
    expandCommandForWorker,
    havePython,
    loadJobType,
    pythonSyntaxError,
    replaceTwoWayInSettings,
    runBlenderCommand,
} from "./flamenco_mock.mjs";

const BLENDFILE = "/shared/jobs/song/song.blend";

function settings(overrides = {}) {
    return { frames: "1-100", chunk_size: 30, mode: "txt2img", blendfile: BLENDFILE, video_path: "", ...overrides };
}

function compile(overrides) {
    return loadJobType().compile(settings(overrides));
}

const renderAll = (runs) =>
    "all('FINISHED' in bpy.ops.bend.render(frame_start=a, frame_end=b) for a, b in (" +
    runs.map(([a, b]) => `(${a}, ${b}),`).join(" ") +
    "))";

const renderExpression = (...runs) => `import bpy, sys; ok = ${renderAll(runs)}; sys.exit(0 if ok else 1)`;

const assembleExpression = (...runs) =>
    `import bpy, sys; video = sys.argv[sys.argv.index('--') + 1]; ok = ${renderAll(runs)}` +
    " and 'FINISHED' in bpy.ops.wm.save_mainfile()" +
    " and 'FINISHED' in (bpy.ops.bend.export_video(filepath=video) if video else bpy.ops.bend.export_video())" +
    "; sys.exit(0 if ok else 1)";

/** The render tasks (all but the last) and the final task. */
function split(job) {
    return { renders: job.tasks.slice(0, -1), final: job.tasks[job.tasks.length - 1] };
}

function commandOf(task) {
    assert.equal(task.commands.length, 1, `${task.name} runs one command`);
    return task.commands[0];
}

function expressionOf(task) {
    const { args } = commandOf(task).parameters;
    return args[args.indexOf("--python-expr") + 1];
}

/** The runs of frames a task's expression renders, as "A-B" joined by commas. */
function runsOf(task) {
    const runs = [...expressionOf(task).matchAll(/\((\d+), (\d+)\),/g)].map((m) => `${m[1]}-${m[2]}`);
    assert.ok(runs.length > 0, `no frame range in ${expressionOf(task)}`);
    return runs.join(",");
}

const renderedRanges = (job) => split(job).renders.map(runsOf);

describe("chunking (txt2img)", () => {
    it("splits 1-100 by 30 into 1-30, 31-60, 61-90, 91-100", () => {
        const job = compile();
        assert.deepEqual(renderedRanges(job), ["1-30", "31-60", "61-90", "91-100"]);
        assert.deepEqual(
            split(job).renders.map((t) => t.name),
            ["render-1-30", "render-31-60", "render-61-90", "render-91-100"],
        );
        assert.equal(job.tasks.length, 5, "four render tasks and the final one");
    });

    it("makes one chunk when the chunk size is at least the range", () => {
        assert.deepEqual(renderedRanges(compile({ chunk_size: 500 })), ["1-100"]);
        assert.deepEqual(renderedRanges(compile({ chunk_size: 100 })), ["1-100"]);
    });

    it("renders a single frame as one task", () => {
        const job = compile({ frames: "47" });
        assert.deepEqual(renderedRanges(job), ["47-47"]);
        assert.equal(job.tasks[0].name, "render-47");
        assert.equal(expressionOf(split(job).final), assembleExpression([47, 47]));
    });

    it("starts the chunks at a non-default start frame", () => {
        assert.deepEqual(renderedRanges(compile({ frames: "101-250", chunk_size: 50 })), [
            "101-150",
            "151-200",
            "201-250",
        ]);
        assert.deepEqual(renderedRanges(compile({ frames: "0-9", chunk_size: 4 })), ["0-3", "4-7", "8-9"]);
    });

    it("makes one task per frame with a chunk size of 1", () => {
        assert.deepEqual(renderedRanges(compile({ frames: "5-7", chunk_size: 1 })), ["5-5", "6-6", "7-7"]);
    });

    it("accepts Blender's A..B notation and spaces", () => {
        assert.deepEqual(renderedRanges(compile({ frames: " 1..10 ", chunk_size: 5 })), ["1-5", "6-10"]);
        assert.deepEqual(renderedRanges(compile({ frames: "1 - 10", chunk_size: 5 })), ["1-5", "6-10"]);
    });

    it("accepts Flamenco's frame lists: a chunk across a gap renders each run of consecutive frames", () => {
        const job = compile({ frames: "1-10,20-30", chunk_size: 8 });
        assert.deepEqual(renderedRanges(job), ["1-8", "9-10,20-25", "26-30"]);
        // The names are Flamenco's own chunk notation (frameChunker writes runs of two frame by frame).
        assert.deepEqual(split(job).renders.map((t) => t.name), ["render-1-8", "render-9,10,20-25", "render-26-30"]);
        assert.equal(expressionOf(job.tasks[1]), renderExpression([9, 10], [20, 25]));
        assert.equal(expressionOf(split(job).final), assembleExpression([1, 10], [20, 30]));
    });

    it("sorts frame lists, renders each frame once and joins adjacent parts", () => {
        assert.deepEqual(renderedRanges(compile({ frames: "20-30,1-10,5,11-12", chunk_size: 100 })), ["1-12,20-30"]);
        assert.deepEqual(renderedRanges(compile({ frames: "40,38..39", chunk_size: 2 })), ["38-39", "40-40"]);
    });

    it("covers every frame exactly once, in order, for many sizes and lists", () => {
        for (const frames of ["1-1", "1-250", "7-93", "0-3600", "3-9,15,17-40,100-130"]) {
            for (const size of [1, 2, 7, 30, 1000]) {
                const job = compile({ frames, chunk_size: size });
                const covered = [];
                for (const task of split(job).renders) {
                    const before = covered.length;
                    for (const run of runsOf(task).split(",")) {
                        const [a, b] = run.split("-").map(Number);
                        for (let f = a; f <= b; f++) covered.push(f);
                    }
                    assert.ok(covered.length - before <= size, `${task.name} has more than ${size} frames`);
                    assert.equal(commandOf(task).totalStepCount, covered.length - before, `${task.name}: steps`);
                }
                const expected = [];
                for (const part of frames.split(",")) {
                    const [a, b = a] = part.split("-").map(Number);
                    for (let f = a; f <= b; f++) expected.push(f);
                }
                assert.deepEqual(covered, expected, `${frames} by ${size}`);
            }
        }
    });
});

describe("invalid settings", () => {
    const cases = [
        ["chunk size 0", { chunk_size: 0 }, /^Error: chunk_size: .*at least 1 \(got 0\)/],
        ["a negative chunk size", { chunk_size: -5 }, /chunk_size: .*\(got -5\)/],
        ["a fractional chunk size", { chunk_size: 2.5 }, /chunk_size: must be a whole number/],
        ["a chunk size given as text", { chunk_size: "10" }, /chunk_size: .*\(got "10"\)/],
        ["a missing chunk size", { chunk_size: undefined }, /chunk_size: /],
        ["an end before the start", { frames: "100-1" }, /^Error: frames: '100-1' ends before it starts/],
        ["a part ending before it starts", { frames: "1-10,30-20" }, /^Error: frames: '30-20' ends before it/],
        ["no frames", { frames: "" }, /^Error: frames: no frame range given/],
        ["missing frames", { frames: undefined }, /^Error: frames: no frame range given/],
        ["an empty part", { frames: "1-10,,20" }, /^Error: frames: '' in '1-10,,20' is not a frame range/],
        ["a negative frame", { frames: "-5-10" }, /^Error: frames: '-5-10' in '-5-10' is not a frame range/],
        ["words", { frames: "all" }, /^Error: frames: 'all' in 'all' is not a frame range/],
        ["a frame past Blender's last", { frames: "1-99999999" }, /^Error: frames: '1-99999999' goes past frame/],
        ["an unknown mode", { mode: "video2video" }, /^Error: mode: expected 'txt2img' or 'img2img'.*"video2video"/],
        ["no mode", { mode: undefined }, /^Error: mode: /],
        ["no blend file", { blendfile: "" }, /^Error: blendfile: no \.blend file given/],
        ["a video path that is not text", { video_path: 3 }, /^Error: video_path: /],
        ["img2img frames with a gap", { mode: "img2img", frames: "1-10,20-30" }, /^Error: frames: .* has gaps/],
    ];
    for (const [what, overrides, message] of cases) {
        it(`rejects ${what}, naming the setting`, () => {
            assert.throws(() => compile(overrides), (error) => {
                assert.match(String(error), message);
                return true;
            });
        });
    }

    it("ignores the chunk size for img2img, which renders as one task", () => {
        assert.deepEqual(renderedRanges(compile({ mode: "img2img", chunk_size: 0 })), ["1-100"]);
    });
});

describe("img2img", () => {
    it("renders the whole range as one sequential task, then the final task", () => {
        const { compile: compileWith, printed } = loadJobType();
        const job = compileWith(settings({ mode: "img2img", frames: "10-250", chunk_size: 30 }));
        assert.equal(job.tasks.length, 2);
        const { renders, final } = split(job);
        assert.equal(expressionOf(renders[0]), renderExpression([10, 250]));
        assert.equal(commandOf(renders[0]).totalStepCount, 241);
        assert.match(renders[0].name, /^render-10-250 .*img2img.*one sequential task/);
        assert.deepEqual(final.dependencies, [renders[0].uuid]);
        assert.equal(expressionOf(final), assembleExpression([10, 250]));
        assert.ok(
            printed.some((line) => /img2img/.test(line) && /one sequential task/.test(line)),
            `nothing printed says so: ${JSON.stringify(printed)}`,
        );
    });

    it("accepts a frame list with no gap as one range", () => {
        assert.deepEqual(renderedRanges(compile({ mode: "img2img", frames: "11-20,1-10" })), ["1-20"]);
    });

    it("says so in the job type's description of the mode setting", () => {
        const mode = loadJobType().JOB_TYPE.settings.find((s) => s.key === "mode");
        assert.match(mode.description, /img2img.*one sequential task/is);
    });
});

describe("the final task", () => {
    it("comes last and depends on every render task, which depend on nothing", () => {
        const job = compile({ frames: "1-250", chunk_size: 25 });
        const { renders, final } = split(job);
        assert.equal(renders.length, 10);
        assert.equal(final.name, "assemble-video");
        assert.equal(final.type, "blender");
        assert.deepEqual(final.dependencies, renders.map((t) => t.uuid));
        for (const task of renders) {
            assert.deepEqual(task.dependencies, [], `${task.name} should run in parallel with the others`);
        }
    });

    it("renders the whole range, saves the .blend and exports the video", () => {
        assert.equal(expressionOf(split(compile({ frames: "101-250" })).final), assembleExpression([101, 250]));
    });

    it("counts one step per frame of the whole range (each one rendered or skipped)", () => {
        const { final } = split(compile({ frames: "1-10,20-30" }));
        assert.equal(commandOf(final).totalStepCount, 21);
        assert.equal(final.stepsTotal, 21);
    });
});

describe("the commands", () => {
    it("run Blender on the blend file with --python-exit-code 1, the exact expression, then the paths", () => {
        const job = compile({ video_path: "//renders/song.mp4" });
        const expected = [
            [renderExpression([1, 30]), [], 30],
            [renderExpression([31, 60]), [], 30],
            [renderExpression([61, 90]), [], 30],
            [renderExpression([91, 100]), [], 10],
            [assembleExpression([1, 100]), ["--", "//renders/song.mp4"], 100],
        ];
        assert.equal(job.tasks.length, expected.length);
        job.tasks.forEach((task, i) => {
            assert.equal(task.type, "blender");
            const [expression, after, steps] = expected[i];
            assert.deepEqual(commandOf(task), {
                name: "blender-render",
                parameters: {
                    exe: "{blender}",
                    exeArgs: "{blenderArgs}",
                    argsBefore: [],
                    blendfile: BLENDFILE,
                    args: ["--python-exit-code", "1", "--python-expr", expression, ...after],
                },
                totalStepCount: steps,
            });
        });
    });

    it("never hold a path or a {variable} inside the Python expression", () => {
        const job = compile({ frames: "1-10,20-30", video_path: "{render}/song/out.mp4" });
        for (const task of job.tasks) {
            const expression = expressionOf(task);
            assert.ok(!/[{}]/.test(expression), `${task.name}: ${expression}`);
            assert.ok(!expression.includes("render}"), `${task.name}`);
        }
        assert.deepEqual(commandOf(split(job).final).parameters.args.slice(-2), ["--", "{render}/song/out.mp4"]);
    });
});

describe("the job type's settings", () => {
    const { JOB_TYPE } = loadJobType();
    const byKey = Object.fromEntries(JOB_TYPE.settings.map((s) => [s.key, s]));

    it("are well-formed for Flamenco", () => {
        assert.equal(typeof JOB_TYPE.label, "string");
        assert.equal(new Set(JOB_TYPE.settings.map((s) => s.key)).size, JOB_TYPE.settings.length, "unique keys");
        for (const setting of JOB_TYPE.settings) {
            assert.ok(["string", "int32", "float", "bool"].includes(setting.type), `${setting.key}: type`);
            if ("visible" in setting) {
                assert.ok(["visible", "submission", "web", "hidden"].includes(setting.visible), `${setting.key}`);
            }
            if ("subtype" in setting) {
                assert.ok(["file_path", "dir_path", "file_name", "hashed_file_path"].includes(setting.subtype));
            }
            if ("choices" in setting) assert.equal(setting.type, "string", `${setting.key}: choices need a string`);
            assert.equal(typeof setting.description, "string", `${setting.key}: description`);
        }
    });

    it("read the frame range and the mode at submission from the scene the Sequencer shows", () => {
        // Evaluated in Blender by tests/blender/test_sequencer_scene.py.
        const scene = '(getattr(C, "sequencer_scene", None) or C.scene)';
        assert.equal(byKey.frames.eval, `(lambda s: f'{s.frame_start}-{s.frame_end}')${scene}`);
        assert.equal(byKey.mode.eval, `${scene}.bend.mode`);
        // Settings the add-on does not show are evaluated when the job is submitted, never left stale.
        assert.ok(["web", "hidden"].includes(byKey.mode.visible));
        assert.deepEqual([...byKey.mode.choices], ["txt2img", "img2img"]);
    });

    it("take the blend file from the Flamenco add-on, which fills in `blendfile`", () => {
        assert.equal(byKey.blendfile.required, true);
        assert.equal(byKey.blendfile.type, "string");
    });

    it("default to a chunk size that compiles", () => {
        assert.ok(Number.isInteger(byKey.chunk_size.default) && byKey.chunk_size.default >= 1);
        const job = loadJobType().compile(settings({ chunk_size: byKey.chunk_size.default }));
        assert.ok(job.tasks.length >= 2);
    });
});

describe("the Python each task runs (with a stand-in bpy)", { skip: !havePython() && "no python3 here" }, () => {
    const job = compile({ frames: "1-100", chunk_size: 30, video_path: `/tmp/renders/it's "done".mp4` });
    const chunk = commandOf(job.tasks[1]).parameters;
    const assemble = commandOf(split(job).final).parameters;

    it("a chunk renders its frames and exits 0 when the render finished", () => {
        const run = runBlenderCommand(chunk);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls, [["bend.render", { frame_start: 31, frame_end: 60 }]]);
    });

    it("a chunk exits 1 when the render was stopped or cancelled", () => {
        assert.equal(runBlenderCommand(chunk, { "bend.render": "CANCELLED" }).status, 1);
    });

    it("a chunk exits 1 when the render reports an error", () => {
        const run = runBlenderCommand(chunk, { "bend.render": "ERROR" });
        assert.equal(run.status, 1);
        assert.match(run.stderr, /RuntimeError/);
    });

    it("a chunk across a gap renders each run in order, and stops at the first that does not finish", () => {
        const gapped = commandOf(compile({ frames: "1-10,20-30", chunk_size: 8 }).tasks[1]).parameters;
        const run = runBlenderCommand(gapped);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls, [
            ["bend.render", { frame_start: 9, frame_end: 10 }],
            ["bend.render", { frame_start: 20, frame_end: 25 }],
        ]);
        const stopped = runBlenderCommand(gapped, { "bend.render": "CANCELLED" });
        assert.equal(stopped.status, 1);
        assert.equal(stopped.calls.length, 1);
    });

    it("the final task renders the whole range, saves, then exports to the path given after --", () => {
        const run = runBlenderCommand(assemble);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls, [
            ["bend.render", { frame_start: 1, frame_end: 100 }],
            ["wm.save_mainfile", {}],
            ["bend.export_video", { filepath: `/tmp/renders/it's "done".mp4` }],
        ]);
    });

    it("the final task stops at the first step that does not finish, and fails", () => {
        const render = runBlenderCommand(assemble, { "bend.render": "CANCELLED" });
        assert.equal(render.status, 1);
        assert.deepEqual(render.calls.map((c) => c[0]), ["bend.render"]);

        const exported = runBlenderCommand(assemble, { "bend.export_video": "CANCELLED" });
        assert.equal(exported.status, 1);
        assert.deepEqual(exported.calls.map((c) => c[0]), ["bend.render", "wm.save_mainfile", "bend.export_video"]);

        const saved = runBlenderCommand(assemble, { "wm.save_mainfile": "ERROR" });
        assert.equal(saved.status, 1);
        assert.deepEqual(saved.calls.map((c) => c[0]), ["bend.render", "wm.save_mainfile"]);
    });

    it("the final task exports to the default path when none is given", () => {
        const run = runBlenderCommand(commandOf(split(compile()).final).parameters);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls[2], ["bend.export_video", {}]);
    });
});

describe("on a Windows Worker, after Flamenco's variable replacement", { skip: !havePython() && "no python3" }, () => {
    // Submitted from Linux with the video and the .blend on two-way variables' storage (see EXAMPLE_VARIABLES:
    // {render} is /render on Linux and R:\ on Windows, {jobs} is /shared/jobs and S:\jobs).
    const submitted = replaceTwoWayInSettings(
        settings({ frames: "1-10,20-30", chunk_size: 8, video_path: "/render/x/y's \"cut\".mp4" }),
        "linux",
    );
    const job = loadJobType().compile(submitted);
    const onWindows = job.tasks.map((task) => expandCommandForWorker(commandOf(task).parameters, "windows"));

    it("the settings arrive as variables, as the Manager stores them", () => {
        assert.equal(submitted.video_path, "{render}/x/y's \"cut\".mp4");
        assert.equal(submitted.blendfile, "{jobs}/song/song.blend");
    });

    it("every expression is left as it is and still parses as Python", () => {
        job.tasks.forEach((task, i) => {
            const args = onWindows[i].args;
            const expression = args[args.indexOf("--python-expr") + 1];
            assert.equal(expression, expressionOf(task), `${task.name}: changed by the replacement`);
            assert.equal(pythonSyntaxError(expression), null, `${task.name}: ${expression}`);
        });
    });

    it("the paths become the Worker's own, and reach the operators as they are", () => {
        const final = onWindows[onWindows.length - 1];
        assert.equal(final.blendfile, "S:\\jobs\\song\\song.blend");
        assert.deepEqual(final.args.slice(-2), ["--", "R:\\x\\y's \"cut\".mp4"]);
        const run = runBlenderCommand(final);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls.at(-1), ["bend.export_video", { filepath: "R:\\x\\y's \"cut\".mp4" }]);
    });
});
