// SPDX-License-Identifier: GPL-3.0-or-later
//
// Diffusion Bender: a Flamenco 3 job type that renders a bent music video on a render farm.
//
// Install: copy this file into the `scripts/` folder next to the `flamenco-manager` executable and restart the
// Manager. The job type is named after the file: `diffusion-bender`. Submit from Blender with the Flamenco add-on,
// choosing "Diffusion Bender" as the job type. Every Worker needs Blender with the Diffusion Bender extension and
// its dependencies installed, the same model, and the shared storage that holds the .blend file and its frames.
//
// What it makes:
// - txt2img (frames are independent): one render task per chunk of frames, each running
//     blender -b FILE --python-exit-code 1 --python-expr "import bpy, sys; sys.exit(0 if
//       bpy.ops.bend.render(frame_start=A, frame_end=B) == {'FINISHED'} else 1)"
//   `--python-exit-code 1` turns a Python error (an ERROR report from the operator) into a failed task; the
//   sys.exit makes a render that ended any other way (stopped, cancelled) fail the task too. (Blender exits with a
//   SystemExit's code when one is raised from a script or --python-expr, as stand-alone Python does.)
// - img2img (each frame starts from the previous one): one sequential render task over the whole range.
// - Then one "assemble-video" task, after every render task: it renders the whole range again (which skips the
//   frames already on disk, renders any a chunk missed and rebuilds the image strip in the Sequencer), saves the
//   .blend with the strip, and exports the video with the sound (bpy.ops.bend.export_video).
//
// The code runs in Flamenco Manager's JavaScript engine (goja, strict mode), which provides the globals `author`
// (author.Task, author.Command) and `print`. Only those are used here; the frame range and its chunks are
// handled below.

const JOB_TYPE = {
    label: "Diffusion Bender",
    description: "Render Diffusion Bender frames in chunks across Workers, then assemble and export the video",
    settings: [
        {
            key: "frames",
            type: "string",
            required: true,
            eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
            evalInfo: {showLinkButton: true, description: "The scene's frame range"},
            description: "Frames to render: one range such as '1-250', or one frame such as '47'",
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
            eval: "C.scene.bend.mode",
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

function compileJob(job) {
    const settings = job.settings;
    const range = bendFrameRange(settings.frames);
    const mode = bendMode(settings.mode);
    const blendfile = bendBlendfile(settings.blendfile);
    const videoPath = bendVideoPath(settings.video_path);

    const renderTasks = [];
    if (mode === "img2img") {
        print(`Diffusion Bender: img2img renders frames ${range.first}-${range.last} as one sequential task on `
            + "one Worker, because each frame starts from the previous one (Chunk Size is ignored)");
        renderTasks.push(bendRenderTask(
            `render-${bendRangeName(range)} (img2img: one sequential task)`, blendfile, range));
    } else {
        const chunks = bendChunks(range, bendChunkSize(settings.chunk_size));
        print(`Diffusion Bender: txt2img frames ${range.first}-${range.last} in ${chunks.length} render task(s)`);
        for (const chunk of chunks) {
            renderTasks.push(bendRenderTask(`render-${bendRangeName(chunk)}`, blendfile, chunk));
        }
    }

    const assemble = author.Task("assemble-video", "blender");
    assemble.addCommand(bendBlenderCommand(blendfile, bendAssembleExpression(range, videoPath)));
    for (const task of renderTasks) {
        job.addTask(task);
        assemble.addDependency(task);
    }
    job.addTask(assemble);
}

// The frame range {first, last} of the `frames` setting: "A-B", Blender's "A..B", or one frame "A".
function bendFrameRange(value) {
    const text = value === undefined || value === null ? "" : String(value).trim();
    if (text === "") {
        throw new Error("frames: no frame range given; set Frames to a range such as '1-250'");
    }
    if (text.indexOf(",") >= 0) {
        throw new Error(`frames: '${text}' is more than one range; this job type renders one range of `
            + "consecutive frames, such as '1-250'");
    }
    const match = /^(\d+)\s*(?:(?:-|\.\.)\s*(\d+))?$/.exec(text);
    if (match === null) {
        throw new Error(`frames: '${text}' is not a frame range; use 'START-END' such as '1-250', or one frame`);
    }
    const first = parseInt(match[1], 10);
    const last = match[2] === undefined ? first : parseInt(match[2], 10);
    if (last < first) {
        throw new Error(`frames: '${text}' ends before it starts; the end frame must be at least the start frame`);
    }
    return {first: first, last: last};
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

// Consecutive chunks of at most `size` frames covering the range, in order.
function bendChunks(range, size) {
    const chunks = [];
    for (let first = range.first; first <= range.last; first += size) {
        chunks.push({first: first, last: Math.min(first + size - 1, range.last)});
    }
    return chunks;
}

function bendRangeName(range) {
    return range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`;
}

function bendRenderTask(name, blendfile, range) {
    const task = author.Task(name, "blender");
    task.addCommand(bendBlenderCommand(blendfile, bendRenderExpression(range)));
    return task;
}

// Blender in background mode (`{blenderArgs}`, "-b -y" by default) opens the file, then runs the expression.
// `--python-exit-code` must come before `--python-expr`: Blender reads its arguments in order.
function bendBlenderCommand(blendfile, expression) {
    return author.Command("blender-render", {
        exe: "{blender}",
        exeArgs: "{blenderArgs}",
        argsBefore: [],
        blendfile: blendfile,
        args: ["--python-exit-code", "1", "--python-expr", expression],
    });
}

function bendRenderCall(range) {
    return `bpy.ops.bend.render(frame_start=${range.first}, frame_end=${range.last})`;
}

function bendRenderExpression(range) {
    return `import bpy, sys; sys.exit(0 if ${bendRenderCall(range)} == {'FINISHED'} else 1)`;
}

// Render the whole range (nothing left to render but any frame a chunk missed; it rebuilds the image strip from
// the frames on disk), save the .blend so it keeps the strip, then export the video. Each step runs only if the
// one before finished; an error in any of them fails the task.
function bendAssembleExpression(range, videoPath) {
    // A JSON string is a valid Python string literal.
    const exportArgs = videoPath === "" ? "" : `filepath=${JSON.stringify(videoPath)}`;
    return "import bpy, sys; ok = "
        + `${bendRenderCall(range)} == {'FINISHED'}`
        + " and bpy.ops.wm.save_mainfile() == {'FINISHED'}"
        + ` and bpy.ops.bend.export_video(${exportArgs}) == {'FINISHED'}`
        + "; sys.exit(0 if ok else 1)";
}
