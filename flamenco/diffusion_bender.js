// SPDX-License-Identifier: GPL-3.0-or-later
//
// Diffusion Bender: a Flamenco 3 job type that renders a bent music video on a render farm.
//
// Install: copy this file into the `scripts/` folder next to the `flamenco-manager` executable and restart the
// Manager. The job type is named after the file: `diffusion-bender`. Submit from Blender with the Flamenco add-on,
// choosing "Diffusion Bender" as the job type. After replacing this file on the Manager, refresh the job types in
// the add-on before submitting: the add-on keeps the settings it fetched, and once they differ from this file's the
// Manager refuses the job ("job type etag does not match"). Every Worker needs Blender with the Diffusion Bender
// extension and its dependencies installed, the same model, and the shared storage that holds the .blend file and
// its frames.
//
// What it makes:
// - txt2img (frames are independent): one render task per chunk of frames, each running
//     blender -b -y FILE --python-exit-code 1 --python-expr "import bpy, sys; ok = all('FINISHED' in
//       bpy.ops.bend.render(frame_start=a, frame_end=b) for a, b in ((A, B),)); sys.exit(0 if ok else 1)"
//   (one (A, B) pair per run of consecutive frames in the chunk). `--python-exit-code 1` turns a Python error (an
//   ERROR report from the operator) into a failed task; the sys.exit makes a render that ended any other way
//   (stopped, cancelled) fail the task too.
// - img2img (each frame starts from the previous one): one sequential render task over the whole range.
// - Then one "assemble-video" task, after every render task: it renders the whole range again (which skips the
//   frames already on disk, renders any a chunk missed and rebuilds the image strip in the Sequencer), saves the
//   .blend with the strip, and exports the video with the sound (bpy.ops.bend.export_video).
//
// Paths never go inside the Python expression. Flamenco replaces path variables in every argument and, in one
// that held a path variable, turns every slash and backslash into the Worker's separator: a path inside Python
// source would become `"R:\x\y.mp4"` on a Windows Worker, an escape error. The video path travels as its own
// argument after `--` (Blender leaves those to Python's sys.argv), and the expressions hold no braces, so that no
// text in them can be read as a `{variable}`.
//
// Progress: each command's totalStepCount is its number of frames. A Worker counts one step for each line Blender
// prints starting "Time:" (a frame rendered) or "Skipping existing frame", and shows each "Saved: '<file>'" as the
// job's latest image; bpy.ops.bend.render prints those lines in background mode for each frame it renders or skips.
// (Blender may print its own "Time:" line per frame while the last task writes the video; the Manager counts no
// more steps than the total.)
//
// The code runs in Flamenco Manager's JavaScript engine (goja, strict mode). It uses the globals `author`, `print`,
// `frameChunker` and `frameCount` that Flamenco provides, and nothing else.

const JOB_TYPE = {
    label: "Diffusion Bender",
    description: "Render Diffusion Bender frames in chunks across Workers, then assemble and export the video",
    settings: [
        {
            key: "frames",
            type: "string",
            required: true,
            // The scene bend.render renders on the Worker: the one the Sequencer shows (Blender 5's workspace
            // sequencer scene), or the window's.
            eval: "(lambda s: f'{s.frame_start}-{s.frame_end}')(getattr(C, \"sequencer_scene\", None) or C.scene)",
            evalInfo: {showLinkButton: true, description: "The scene's frame range"},
            description: "Frames to render: ranges and frames separated by commas, such as '1-250', '1-10,20-30' "
                + "or '47' (Blender's '1..250' works too)",
        },
        {
            key: "chunk_size",
            type: "int32",
            default: 25,
            propargs: {min: 1},
            visible: "submission",
            description: "Text to Image: frames per render task. Each task loads the model once, so larger chunks "
                + "waste less time loading. Image to Image ignores it: it renders as one sequential task",
        },
        {
            key: "video_path",
            type: "string",
            subtype: "file_path",
            default: "",
            visible: "submission",
            description: "The MP4 the last task exports; empty: //bend/<scene name>.mp4 next to the .blend file",
        },
        {
            key: "mode",
            type: "string",
            choices: ["txt2img", "img2img"],
            required: true,
            eval: "(getattr(C, \"sequencer_scene\", None) or C.scene).bend.mode",
            visible: "web",
            description: "The scene's Bend mode, read at submission. txt2img frames are independent and split into "
                + "chunks across Workers; img2img frames each start from the previous one, so they render as ONE "
                + "sequential task on one Worker",
        },
        {
            key: "blendfile",
            type: "string",
            required: true,
            visible: "web",
            description: "The .blend file to render (set by the Flamenco add-on)",
        },
    ],
};

// Blender's last frame (MAXFRAME): no scene reaches past it, and Flamenco lists every frame of the range in memory.
const BEND_MAX_FRAME = 1048574;

function compileJob(job) {
    const settings = job.settings;
    const frames = bendFrames(settings.frames);
    const mode = bendMode(settings.mode);
    const blendfile = bendBlendfile(settings.blendfile);
    const videoPath = bendVideoPath(settings.video_path);
    // The whole selection as runs of consecutive frames ("1-10,20-30"), sorted, each frame once.
    const all = frameChunker(frames, frameCount(frames))[0];

    const renderTasks = [];
    if (mode === "img2img") {
        if (bendRuns(all).length > 1) {
            throw new Error(`frames: '${frames}' has gaps; img2img renders one range of consecutive frames `
                + "(each frame starts from the previous one), such as '1-250'");
        }
        print(`Diffusion Bender: img2img renders frames ${all} as one sequential task on one Worker, because `
            + "each frame starts from the previous one (Chunk Size is ignored)");
        renderTasks.push(bendRenderTask(`render-${all} (img2img: one sequential task)`, blendfile, all));
    } else {
        const chunks = frameChunker(frames, bendChunkSize(settings.chunk_size));
        print(`Diffusion Bender: txt2img frames ${all} in ${chunks.length} render task(s)`);
        for (const chunk of chunks) {
            renderTasks.push(bendRenderTask(`render-${chunk}`, blendfile, chunk));
        }
    }
    for (const task of renderTasks) {
        job.addTask(task);
    }

    // job.addTask stores a copy of the task as it is then: the command and the dependencies go in first.
    const assemble = author.Task("assemble-video", "blender");
    assemble.addCommand(bendBlenderCommand(blendfile, bendAssembleExpression(all), [videoPath], frameCount(all)));
    for (const task of renderTasks) {
        assemble.addDependency(task);
    }
    job.addTask(assemble);
}

// The `frames` setting, checked part by part so that a mistake is named; Flamenco's frameChunker does the rest.
function bendFrames(value) {
    const text = value === undefined || value === null ? "" : String(value).trim();
    if (text === "") {
        throw new Error("frames: no frame range given; set Frames to a range such as '1-250'");
    }
    for (const part of text.split(",")) {
        const match = /^\s*(\d+)\s*(?:(?:-|\.\.)\s*(\d+)\s*)?$/.exec(part);
        if (match === null) {
            throw new Error(`frames: '${part.trim()}' in '${text}' is not a frame range; use 'START-END' such as `
                + "'1-250', one frame such as '47', or several separated by commas");
        }
        const first = parseInt(match[1], 10);
        const last = match[2] === undefined ? first : parseInt(match[2], 10);
        if (last < first) {
            throw new Error(`frames: '${part.trim()}' ends before it starts; the end frame must be at least the `
                + "start frame");
        }
        if (last > BEND_MAX_FRAME) {
            throw new Error(`frames: '${part.trim()}' goes past frame ${BEND_MAX_FRAME}, Blender's last frame`);
        }
    }
    return text;
}

// Flamenco's range text ("1-3,5,6,9-12") as runs of consecutive frames [[1, 3], [5, 6], [9, 12]].
function bendRuns(range) {
    const runs = [];
    for (const part of range.split(",")) {
        const ends = part.split("-").map((end) => parseInt(end, 10));
        const first = ends[0];
        const last = ends.length > 1 ? ends[1] : first;
        if (runs.length > 0 && runs[runs.length - 1][1] + 1 === first) {
            runs[runs.length - 1][1] = last;
        } else {
            runs.push([first, last]);
        }
    }
    return runs;
}

function bendChunkSize(value) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
        throw new Error(`chunk_size: must be a whole number of frames, at least 1 (got ${JSON.stringify(value)})`);
    }
    return value;
}

function bendMode(value) {
    if (value !== "txt2img" && value !== "img2img") {
        throw new Error(`mode: expected 'txt2img' or 'img2img' (the scene's Bend mode), got ${JSON.stringify(value)}`);
    }
    return value;
}

function bendBlendfile(value) {
    if (typeof value !== "string" || value.trim() === "") {
        throw new Error("blendfile: no .blend file given; submit the job from Blender with the Flamenco add-on, "
            + "which sets it");
    }
    return value;
}

function bendVideoPath(value) {
    if (value === undefined || value === null) {
        return "";
    }
    if (typeof value !== "string") {
        throw new Error(`video_path: expected a file path or nothing, got ${JSON.stringify(value)}`);
    }
    return value.trim();
}

function bendRenderTask(name, blendfile, range) {
    const task = author.Task(name, "blender");
    task.addCommand(bendBlenderCommand(blendfile, bendRenderExpression(range), [], frameCount(range)));
    return task;
}

// Blender in background mode (`{blenderArgs}`, "-b -y" by default) opens the file, then runs the expression.
// `--python-exit-code` must come before `--python-expr`: Blender reads its arguments in order. Arguments after
// `--` are Blender's to ignore and the expression's to read from sys.argv.
function bendBlenderCommand(blendfile, expression, pythonArgs, steps) {
    return author.Command("blender-render", {
        exe: "{blender}",
        exeArgs: "{blenderArgs}",
        argsBefore: [],
        blendfile: blendfile,
        args: ["--python-exit-code", "1", "--python-expr", expression].concat(
            pythonArgs.length > 0 ? ["--"] : [], pythonArgs),
    }, steps);
}

// True when bend.render finished for every run of the range, in order; it stops at the first that did not.
function bendRenderAll(range) {
    const runs = bendRuns(range).map((run) => `(${run[0]}, ${run[1]}),`).join(" ");
    return `all('FINISHED' in bpy.ops.bend.render(frame_start=a, frame_end=b) for a, b in (${runs}))`;
}

function bendRenderExpression(range) {
    return `import bpy, sys; ok = ${bendRenderAll(range)}; sys.exit(0 if ok else 1)`;
}

// Render the whole range (nothing left to render but any frame a chunk missed; it rebuilds the image strip from
// the frames on disk), save the .blend so it keeps the strip, then export the video to the path given as the
// first argument after `--` (empty: the default path). Each step runs only if the one before finished.
function bendAssembleExpression(range) {
    return "import bpy, sys; video = sys.argv[sys.argv.index('--') + 1]; ok = "
        + bendRenderAll(range)
        + " and 'FINISHED' in bpy.ops.wm.save_mainfile()"
        + " and 'FINISHED' in (bpy.ops.bend.export_video(filepath=video) if video else bpy.ops.bend.export_video())"
        + "; sys.exit(0 if ok else 1)";
}
