// The Flamenco job type (flamenco/diffusion_bender.js) against a mock of Flamenco's job-compiler API: how a render
// splits into tasks, what each task runs, and what the Python it runs does with a stand-in bpy.
// Run: node --test tests/flamenco/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { havePython, loadJobType, runPythonExpression } from "./flamenco_mock.mjs";

const BLENDFILE = "/shared/projects/song/song.blend";

function settings(overrides = {}) {
    return { frames: "1-100", chunk_size: 30, mode: "txt2img", blendfile: BLENDFILE, video_path: "", ...overrides };
}

function compile(overrides) {
    return loadJobType().compile(settings(overrides));
}

const renderExpression = (a, b) =>
    `import bpy, sys; sys.exit(0 if bpy.ops.bend.render(frame_start=${a}, frame_end=${b}) == {'FINISHED'} else 1)`;

const assembleExpression = (a, b, exportArgs = "") =>
    `import bpy, sys; ok = bpy.ops.bend.render(frame_start=${a}, frame_end=${b}) == {'FINISHED'}` +
    ` and bpy.ops.wm.save_mainfile() == {'FINISHED'}` +
    ` and bpy.ops.bend.export_video(${exportArgs}) == {'FINISHED'}; sys.exit(0 if ok else 1)`;

/** The render tasks (all but the last) and the final task. */
function split(job) {
    return { renders: job.tasks.slice(0, -1), final: job.tasks[job.tasks.length - 1] };
}

function expressionOf(task) {
    assert.equal(task.commands.length, 1, `${task.name} runs one command`);
    const { args } = task.commands[0].parameters;
    return args[args.indexOf("--python-expr") + 1];
}

/** The frame ranges the render tasks' expressions ask for, as "A-B". */
function renderedRanges(job) {
    return split(job).renders.map((task) => {
        const match = /frame_start=(\d+), frame_end=(\d+)\)/.exec(expressionOf(task));
        assert.ok(match, `no frame range in ${expressionOf(task)}`);
        return `${match[1]}-${match[2]}`;
    });
}

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

    it("makes one chunk when the chunk size is larger than the range", () => {
        assert.deepEqual(renderedRanges(compile({ frames: "1-100", chunk_size: 500 })), ["1-100"]);
    });

    it("makes one chunk when the chunk size equals the range", () => {
        assert.deepEqual(renderedRanges(compile({ frames: "1-100", chunk_size: 100 })), ["1-100"]);
    });

    it("renders a single frame as one task", () => {
        const job = compile({ frames: "47" });
        assert.deepEqual(renderedRanges(job), ["47-47"]);
        assert.equal(job.tasks[0].name, "render-47");
        assert.equal(expressionOf(split(job).final), assembleExpression(47, 47));
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

    it("covers every frame exactly once, in order, for many sizes", () => {
        for (const [first, last] of [[1, 1], [1, 250], [7, 93], [0, 3600]]) {
            for (const size of [1, 2, 7, 30, 1000]) {
                if ((last - first + 1) / size > 400) continue; // keep the test quick
                const frames = [];
                for (const range of renderedRanges(compile({ frames: `${first}-${last}`, chunk_size: size }))) {
                    const [a, b] = range.split("-").map(Number);
                    assert.ok(b - a + 1 <= size, `${range} is longer than ${size}`);
                    for (let f = a; f <= b; f++) frames.push(f);
                }
                const expected = Array.from({ length: last - first + 1 }, (_, i) => first + i);
                assert.deepEqual(frames, expected, `${first}-${last} by ${size}`);
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
        ["no frames", { frames: "" }, /^Error: frames: no frame range given/],
        ["missing frames", { frames: undefined }, /^Error: frames: no frame range given/],
        ["several ranges", { frames: "1-10,20-30" }, /^Error: frames: '1-10,20-30' is more than one range/],
        ["a negative frame", { frames: "-5-10" }, /^Error: frames: '-5-10' is not a frame range/],
        ["words", { frames: "all" }, /^Error: frames: 'all' is not a frame range/],
        ["an unknown mode", { mode: "video2video" }, /^Error: mode: expected 'txt2img' or 'img2img'.*"video2video"/],
        ["no mode", { mode: undefined }, /^Error: mode: /],
        ["no blend file", { blendfile: "" }, /^Error: blendfile: no \.blend file given/],
        ["a video path that is not text", { video_path: 3 }, /^Error: video_path: /],
    ];
    for (const [what, overrides, message] of cases) {
        it(`rejects ${what}, naming the setting, before adding any task`, () => {
            const { compile: compileWith, newJob } = loadJobType();
            const job = newJob(settings(overrides));
            assert.throws(() => compileWith(job.settings, job), message);
            assert.equal(job.tasks.length, 0);
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
        assert.deepEqual(renderedRanges(job), ["10-250"]);
        assert.equal(expressionOf(renders[0]), renderExpression(10, 250));
        assert.match(renders[0].name, /^render-10-250 .*img2img.*one sequential task/);
        assert.deepEqual(final.dependencies, [renders[0]]);
        assert.equal(expressionOf(final), assembleExpression(10, 250));
        assert.ok(
            printed.some((line) => /img2img/.test(line) && /one sequential task/.test(line)),
            `nothing printed says so: ${JSON.stringify(printed)}`,
        );
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
        assert.equal(final.dependencies.length, renders.length);
        for (const task of renders) {
            assert.ok(final.dependencies.includes(task), `${task.name} is not a dependency of the final task`);
            assert.deepEqual(task.dependencies, [], `${task.name} should run in parallel with the others`);
        }
    });

    it("renders the whole range, saves the .blend and exports the video", () => {
        assert.equal(expressionOf(split(compile({ frames: "101-250" })).final), assembleExpression(101, 250));
    });

    it("exports to the video path when one is given", () => {
        const job = compile({ video_path: "//renders/song.mp4" });
        assert.equal(expressionOf(split(job).final), assembleExpression(1, 100, 'filepath="//renders/song.mp4"'));
    });
});

describe("the commands", () => {
    it("run Blender on the blend file with --python-exit-code 1 before the exact expression", () => {
        const job = compile();
        const expected = [
            renderExpression(1, 30),
            renderExpression(31, 60),
            renderExpression(61, 90),
            renderExpression(91, 100),
            assembleExpression(1, 100),
        ];
        assert.equal(job.tasks.length, expected.length);
        job.tasks.forEach((task, i) => {
            assert.equal(task.type, "blender");
            assert.equal(task.commands.length, 1);
            const command = task.commands[0];
            assert.equal(command.name, "blender-render");
            // As Flamenco stores them: plain JSON data (the sandbox's arrays have another realm's prototype).
            assert.deepEqual(
                JSON.parse(JSON.stringify(command.parameters)),
                {
                    exe: "{blender}",
                    exeArgs: "{blenderArgs}",
                    argsBefore: [],
                    blendfile: BLENDFILE,
                    args: ["--python-exit-code", "1", "--python-expr", expected[i]],
                },
            );
        });
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

    it("read the frame range and the mode from the scene at submission", () => {
        assert.equal(byKey.frames.eval, "f'{C.scene.frame_start}-{C.scene.frame_end}'");
        assert.equal(byKey.mode.eval, "C.scene.bend.mode");
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
    const job = compile({ frames: "1-100", chunk_size: 30, video_path: `C:\\renders\\it's "done".mp4` });
    const chunk = expressionOf(job.tasks[1]);
    const assemble = expressionOf(split(job).final);

    it("a chunk renders its frames and exits 0 when the render finished", () => {
        const run = runPythonExpression(chunk);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls, [["bend.render", { frame_start: 31, frame_end: 60 }]]);
    });

    it("a chunk exits 1 when the render was stopped or cancelled", () => {
        assert.equal(runPythonExpression(chunk, { "bend.render": "CANCELLED" }).status, 1);
    });

    it("a chunk exits 1 when the render reports an error", () => {
        const run = runPythonExpression(chunk, { "bend.render": "ERROR" });
        assert.equal(run.status, 1);
        assert.match(run.stderr, /RuntimeError/);
    });

    it("the final task renders the whole range, saves, then exports to the path as given", () => {
        const run = runPythonExpression(assemble);
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls, [
            ["bend.render", { frame_start: 1, frame_end: 100 }],
            ["wm.save_mainfile", {}],
            ["bend.export_video", { filepath: `C:\\renders\\it's "done".mp4` }],
        ]);
    });

    it("the final task stops at the first step that does not finish, and fails", () => {
        const render = runPythonExpression(assemble, { "bend.render": "CANCELLED" });
        assert.equal(render.status, 1);
        assert.deepEqual(render.calls.map((c) => c[0]), ["bend.render"]);

        const exported = runPythonExpression(assemble, { "bend.export_video": "CANCELLED" });
        assert.equal(exported.status, 1);
        assert.deepEqual(exported.calls.map((c) => c[0]), ["bend.render", "wm.save_mainfile", "bend.export_video"]);

        const saved = runPythonExpression(assemble, { "wm.save_mainfile": "ERROR" });
        assert.equal(saved.status, 1);
        assert.deepEqual(saved.calls.map((c) => c[0]), ["bend.render", "wm.save_mainfile"]);
    });

    it("the final task exports to the default path when none is given", () => {
        const run = runPythonExpression(expressionOf(split(compile()).final));
        assert.equal(run.status, 0, run.stderr);
        assert.deepEqual(run.calls[2], ["bend.export_video", {}]);
    });
});
