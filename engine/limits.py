"""The engine's explicit limits: every size an input can ask for, refused up front with the reason.

An input beyond one of these is an ``EngineError`` naming the field or file and the limit, raised while the input is
read or validated, before any work starts, so nothing is ever discovered by the allocator or by a Python recursion
or digit limit. docs/reliability.md lists them with the reason for each value. They are generous: each is far
beyond what any render the engine is meant for needs, and close enough to a machine's size to stop a typo or a
hostile file before it costs memory or hours.
"""

from __future__ import annotations

# --- documents: job files, sweep files and the serve protocol's request lines -----------------------------------
# A job for a 10-hour video at 24 fps with a few bends is about 60 MB of JSON.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
# A manifest holds a record (a few hundred bytes, up to kilobytes with many bends) per rendered frame, and every
# re-render of a frame appends one more: room for MAX_FRAMES frames rendered four times with 1 KB records.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024 * 1024
# Jobs nest 4 levels deep (job > frames > frame > bends); Python's own JSON parser overflows its stack near 1,000.
MAX_DOCUMENT_DEPTH = 64
# A string of JSON digits longer than this is not a number any field takes (Python refuses beyond 4,300 digits).
MAX_NUMBER_DIGITS = 400
# Integers are int64 everywhere they end up (seeds, indexes, frame numbers in torch and numpy).
MAX_INT = 2**63 - 1

# --- a render -----------------------------------------------------------------------------------------------------
MAX_SIDE = 8192  # pixels, per side: 8K frames
# width × height × batch: what one U-Net batch holds; 256 frames of 512×512 or 4 of 4096×4096.
MAX_BATCH_PIXELS = 256 * 512 * 512
MAX_STEPS = 1000  # denoising steps per frame: the schedulers' training range
MAX_FRAMES = 1_000_000  # frames per job: 11.5 hours at 24 fps
MAX_FRAME_NUMBER = 99_999_999  # frame numbers stay 8 digits in file names
# frames × steps: a render of more U-Net calls than this would run for months on any machine; it is a typo.
MAX_FRAME_STEPS = 100_000_000
MAX_PROMPTS = 256
MAX_TEXT_CHARS = 100_000  # per prompt or name: CLIP reads 77 tokens, but the tokenizer reads the whole text
MAX_BENDS = 256
MAX_BATCH_SIZE = 256
# Classifier-free guidance beyond this only overflows the latents into a black frame (the paper uses 7.5).
MAX_GUIDANCE = 100.0

# --- a sweep ------------------------------------------------------------------------------------------------------
MAX_SWEEP_AXIS = 64  # values (columns) or layers (rows)
# Every tile is held in memory to draw the sheet: rows × columns × width × height.
MAX_SWEEP_PIXELS = 256 * 1024 * 1024

# --- images -------------------------------------------------------------------------------------------------------
MAX_IMAGE_BYTES = 512 * 1024 * 1024  # an init image file
MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE  # an init image's width × height, read from its header before decoding

# --- audio (the features command) ---------------------------------------------------------------------------------
MAX_AUDIO_BYTES = 4 * 1024 * 1024 * 1024  # a WAV file: 3.4 hours of 8-channel 96 kHz 24-bit audio
MAX_SAMPLE_RATE = 768_000  # Hz: the highest rate any audio interface records
MAX_CHANNELS = 64
MAX_FPS = 1000.0
MAX_WINDOW_MS = 10_000.0
# sample rate × window: the samples in one analysis window (10 s at 192 kHz is 1.9 million).
MAX_WINDOW_SAMPLES = 2_000_000
# frames × window samples: the features gather every frame's window at once (float32, and its spectrum).
MAX_FEATURE_SAMPLES = 256 * 1024 * 1024
