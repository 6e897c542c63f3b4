"""Every draw function of the extension, run against a strict recording layout.

Headless there is no region to draw into, so the panels' ``draw`` run against ``RecordingLayout``: a stand-in
for ``bpy.types.UILayout`` that checks each call against the RNA of the Blender it runs in. It fails on:
- a layout function or attribute UILayout does not have, or an argument its function does not take, of the
  wrong type, or an enum value (icons included) this Blender does not know;
- a property name the data's RNA does not have (``prop``, ``prop_search``, ``template_list``), or a custom
  property path (``prop(scene, '["bend_rms"]')``) whose key the data does not hold;
- an operator idname that is not registered, and a property set on the operator's button that it does not have;
- a UIList or menu class that is not registered.
Because the RNA comes from the running Blender, running this file on 4.2, 4.5 and 5.0 checks every version's
API. Each recorded call keeps the effective ``enabled``/``active``/``alert`` state of its layout at call time.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import blender_env
import bpy
import pytest

UI = bpy.types.UILayout.bl_rna
LAYOUT_FUNCTIONS = {f.identifier: f for f in UI.functions}
LAYOUT_ATTRS = {p.identifier: p for p in UI.properties if p.identifier != "rna_type"}
SUBLAYOUTS = {"row", "column", "box", "split", "grid_flow", "column_flow", "menu_pie"}
# RNA gives no meaningful defaults for these flags; Blender's layouts start enabled, active, unscaled.
ATTR_DEFAULTS = {"enabled": True, "active": True, "scale_x": 1.0, "scale_y": 1.0}
CUSTOM_PATH = re.compile(r'^\["((?:[^"\\]|\\.)*)"\]$')  # a custom property's path, as Blender writes it


class LayoutError(AssertionError):
    """A draw call that the real UILayout would reject, or that names something that does not exist."""


def _check_value(where: str, prop: bpy.types.Property, value: Any) -> None:
    kind = prop.type
    if kind == "BOOLEAN" and not isinstance(value, bool):
        raise LayoutError(f"{where}: expected a bool, got {value!r}")
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        raise LayoutError(f"{where}: expected an int, got {value!r}")
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise LayoutError(f"{where}: expected a number, got {value!r}")
    if kind == "STRING" and not isinstance(value, str):
        raise LayoutError(f"{where}: expected a str, got {value!r}")
    if kind == "ENUM":
        allowed = set(prop.enum_items.keys())
        values = value if prop.is_enum_flag else {value}
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise LayoutError(f"{where}: {unknown} not in this Blender's {prop.identifier} items")


def _rna_property(data: Any, name: str, where: str) -> bpy.types.Property:
    if data is None:
        raise LayoutError(f"{where}: data is None")
    rna = getattr(data, "bl_rna", None)
    if rna is None:
        raise LayoutError(f"{where}: {data!r} is not an RNA struct")
    if name == "rna_type" or name not in rna.properties:
        raise LayoutError(f"{where}: {rna.identifier} has no property {name!r}")
    return rna.properties[name]


def _check_custom_property(data: Any, path: str, index: int, where: str) -> None:
    """``prop(data, '["key"]')``: Blender draws the custom property ``key`` of ``data``, or an error in its place
    (and a console warning) when the data does not hold it."""
    match = CUSTOM_PATH.match(path)
    if match is None:
        raise LayoutError(f"{where}: {path!r} is neither a property name nor a custom property path")
    key = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    try:
        keys = data.keys()
    except (AttributeError, TypeError) as exc:
        raise LayoutError(f"{where}: {data!r} holds no custom properties") from exc
    if key not in keys:
        raise LayoutError(f"{where}: {data!r} has no custom property {key!r}")
    value = data[key]
    if index >= 0 and (not hasattr(value, "__len__") or isinstance(value, str) or index >= len(value)):
        raise LayoutError(f"{where}: index {index} out of range for custom property {key!r}")


def _operator_rna(idname: str) -> bpy.types.Struct:
    module, _, name = idname.partition(".")
    if not module or not name or "." in name:
        raise LayoutError(f"operator: {idname!r} is not of the form 'module.name'")
    ops_module = getattr(bpy.ops, module)
    # bpy.ops makes up a wrapper for any attribute name; only dir() and get_rna_type() know what is registered.
    if name not in dir(ops_module):
        raise LayoutError(f"operator: {idname!r} is not registered")
    try:
        return getattr(ops_module, name).get_rna_type()
    except KeyError as exc:
        raise LayoutError(f"operator: {idname!r} has no RNA") from exc


def _registered(base: type, name: str, where: str) -> type:
    cls = getattr(bpy.types, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise LayoutError(f"{where}: no registered {base.__name__} named {name!r}")
    return cls


@dataclass
class Call:
    """One recorded layout call: its name, its arguments by RNA parameter name, its layout's state then."""

    name: str
    args: dict[str, Any]
    state: dict[str, Any]
    result: Any = None

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.args.get(key, default)


class RecordingOperator:
    """What ``layout.operator()`` returns: property writes are checked against the operator's RNA."""

    def __init__(self, idname: str, rna: bpy.types.Struct) -> None:
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        where = f"operator {self._idname}.{name}"
        if name == "rna_type" or name not in self._rna.properties:
            raise LayoutError(f"{where}: the operator has no property {name!r}")
        _check_value(where, self._rna.properties[name], value)
        self.values[name] = value

    def __getattr__(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        raise LayoutError(f"operator {self._idname}: reading {name!r}, which was never set")


@dataclass
class Recording:
    """Every call of one draw, in order, across all sub-layouts."""

    calls: list[Call] = field(default_factory=list)

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def props(self, data: Any = None) -> list[str]:
        return [c["property"] for c in self.named("prop") if data is None or c["data"] == data]

    def operators(self) -> list[str]:
        return [c["operator"] for c in self.named("operator")]

    def operator(self, idname: str) -> Call:
        found = [c for c in self.named("operator") if c["operator"] == idname]
        assert len(found) == 1, f"{idname} drawn {len(found)} times"
        return found[0]

    def labels(self) -> list[str]:
        return [c.get("text", "") for c in self.named("label")]

    def prop_call(self, data: Any, name: str) -> Call:
        found = [c for c in self.named("prop") if c["data"] == data and c["property"] == name]
        assert len(found) == 1, f"{name} drawn {len(found)} times"
        return found[0]


class RecordingLayout:
    """A strict stand-in for ``bpy.types.UILayout`` (see the module docstring)."""

    def __init__(self, recording: Recording | None = None, parent: RecordingLayout | None = None) -> None:
        object.__setattr__(self, "recording", recording or Recording())
        object.__setattr__(self, "_parent", parent)
        object.__setattr__(self, "_attrs", {})

    # --- attributes ---

    def __setattr__(self, name: str, value: Any) -> None:
        prop = LAYOUT_ATTRS.get(name)
        if prop is None:
            raise LayoutError(f"UILayout has no attribute {name!r}")
        if prop.is_readonly:
            raise LayoutError(f"UILayout.{name} is read-only")
        _check_value(f"UILayout.{name}", prop, value)
        self._attrs[name] = value

    def _own(self, name: str) -> Any:
        layout = self
        while layout is not None:
            if name in layout._attrs:
                return layout._attrs[name]
            layout = layout._parent
        return ATTR_DEFAULTS.get(name, False)

    def effective(self, name: str) -> Any:
        """The flag as Blender applies it: one disabled or inactive ancestor disables or greys out the rest."""
        layout, values = self, []
        while layout is not None:
            if name in layout._attrs:
                values.append(layout._attrs[name])
            layout = layout._parent
        if name in ("enabled", "active"):
            return all(values)
        if name == "alert":
            return any(values)
        return self._own(name)

    def __getattr__(self, name: str) -> Any:
        if name in LAYOUT_ATTRS:
            return self._own(name)
        if name in LAYOUT_FUNCTIONS:
            return lambda *args, **kwargs: self._call(name, args, kwargs)
        raise LayoutError(f"UILayout has no attribute or function {name!r}")

    # --- functions ---

    def _bind(self, name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
        params = [p for p in LAYOUT_FUNCTIONS[name].parameters if not p.is_output]
        if len(args) > len(params):
            raise LayoutError(f"UILayout.{name}: takes {len(params)} arguments, got {len(args)}")
        bound = {p.identifier: value for p, value in zip(params, args, strict=False)}
        by_name = {p.identifier: p for p in params}
        for key, value in kwargs.items():
            if key not in by_name:
                raise LayoutError(f"UILayout.{name}: no argument {key!r} in this Blender")
            if key in bound:
                raise LayoutError(f"UILayout.{name}: {key!r} given twice")
            bound[key] = value
        for p in params:
            if p.is_required and p.identifier not in bound:
                raise LayoutError(f"UILayout.{name}: missing required argument {p.identifier!r}")
            if p.identifier in bound and p.type != "POINTER":
                _check_value(f"UILayout.{name}({p.identifier}=)", p, bound[p.identifier])
        return bound

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        bound = self._bind(name, args, kwargs)
        check = getattr(type(self), f"_check_{name}", None)  # not self: its __getattr__ is strict
        if check is not None:
            check(self, bound)
        state = {
            key: self.effective(key)
            for key in ("enabled", "active", "alert", "use_property_split", "use_property_decorate")
        }
        call = Call(name, bound, state)
        self.recording.calls.append(call)
        if name in SUBLAYOUTS:
            call.result = RecordingLayout(self.recording, self)
        elif name == "panel":
            call.result = (RecordingLayout(self.recording, self), RecordingLayout(self.recording, self))
        elif name == "operator":
            call.result = RecordingOperator(bound["operator"], _operator_rna(bound["operator"]))
        return call.result

    def _check_prop(self, bound: dict) -> None:
        index = bound.get("index", -1)
        if bound["property"].startswith("["):
            _check_custom_property(bound["data"], bound["property"], index, "prop")
            return
        prop = _rna_property(bound["data"], bound["property"], "prop")
        if index >= 0 and index >= getattr(prop, "array_length", 0):
            raise LayoutError(f"prop: index {index} out of range for {prop.identifier}")

    def _check_prop_search(self, bound: dict) -> None:
        prop = _rna_property(bound["data"], bound["property"], "prop_search")
        if prop.type not in ("STRING", "POINTER"):
            raise LayoutError(f"prop_search: {prop.identifier} is a {prop.type}, not a string or pointer")
        search = _rna_property(bound["search_data"], bound["search_property"], "prop_search(search)")
        if search.type != "COLLECTION":
            raise LayoutError(f"prop_search: {search.identifier} is not a collection")

    def _check_template_list(self, bound: dict) -> None:
        _registered(bpy.types.UIList, bound["listtype_name"], "template_list")
        items = _rna_property(bound["dataptr"], bound["propname"], "template_list")
        if items.type != "COLLECTION":
            raise LayoutError(f"template_list: {items.identifier} is not a collection")
        active = _rna_property(bound["active_dataptr"], bound["active_propname"], "template_list(active)")
        if active.type != "INT":
            raise LayoutError(f"template_list: {active.identifier} is not an int")

    def _check_operator(self, bound: dict) -> None:
        _operator_rna(bound["operator"])

    def _check_menu(self, bound: dict) -> None:
        _registered(bpy.types.Menu, bound["menu"], "menu")

    def _check_popover(self, bound: dict) -> None:
        _registered(bpy.types.Panel, bound["panel"], "popover")


# --- the extension under test ---------------------------------------------------------------------------------


def ext() -> types.ModuleType:
    return blender_env.extension()


def module(name: str) -> types.ModuleType:
    return sys.modules[f"{blender_env.MODULE}.{name}"]


def draw_panel(cls: type, context: Any = None) -> Recording:
    layout = RecordingLayout()
    cls.draw(types.SimpleNamespace(layout=layout), context or bpy.context)
    return layout.recording


def draw_fn(fn, *args) -> Recording:
    layout = RecordingLayout()
    fn(layout, *args)
    return layout.recording


def draw_items(list_name: str, data: Any, collection: str, active_prop: str) -> list[Recording]:
    """Each item of a UIList through its draw_item, in every layout type."""
    cls = getattr(bpy.types, list_name)
    recordings = []
    for layout_type in ("DEFAULT", "COMPACT", "GRID"):
        for index, item in enumerate(getattr(data, collection)):
            layout = RecordingLayout()
            fake = types.SimpleNamespace(layout_type=layout_type)
            cls.draw_item(fake, bpy.context, layout, data, item, 0, data, active_prop, index, 0)
            recordings.append(layout.recording)
    return recordings


def panel_classes() -> list[type]:
    return [cls for cls in _subclasses(bpy.types.Panel) if cls.__module__.startswith(blender_env.MODULE)]


def _subclasses(base: type) -> list[type]:
    found = []
    for cls in base.__subclasses__():
        found.append(cls)
        found.extend(_subclasses(cls))
    return found


def panel(name: str) -> type:
    return _registered(bpy.types.Panel, name, "test")


@pytest.fixture
def deps(monkeypatch):
    """Control what the dependency check and the online flag report."""
    state = types.SimpleNamespace(missing=[], online=True, running=False, returncode=None, log=[])
    monkeypatch.setattr(module("blender.dependencies"), "missing", lambda: list(state.missing))
    installer = module("blender.installer")
    monkeypatch.setattr(installer, "online_access", lambda: state.online)
    monkeypatch.setattr(installer, "is_running", lambda: state.running)
    monkeypatch.setattr(installer, "last_returncode", lambda: state.returncode)
    monkeypatch.setattr(installer, "install_log", lambda: list(state.log))
    return state


def add_bend(scene, name: str = "Bend", **values):
    """A bend at the end of the scene's stack (made without the operator), and the active one.

    Adding to a list may move its items in memory: fetch the earlier ones again (``scene.bend.bends[i]``).
    """
    bend = ext().blender.animated_list.add_item(scene.bend.bends, name)
    for key, value in values.items():
        setattr(bend, key, value)
    scene.bend.bend_index = len(scene.bend.bends) - 1
    return bend


# --- the recorder itself ------------------------------------------------------------------------------------


def test_recorder_catches_a_property_typo(scene):
    bend = add_bend(scene)
    layout = RecordingLayout()
    layout.prop(bend, "param")
    with pytest.raises(LayoutError, match="paramm"):
        layout.prop(bend, "paramm")


def test_recorder_takes_a_custom_property_the_data_holds(scene):
    scene["bend_rms"] = 0.5
    scene["bend_pair"] = [0.0, 1.0]
    layout = RecordingLayout()
    layout.prop(scene, '["bend_rms"]', text="RMS")
    layout.prop(scene, '["bend_pair"]', index=1)
    assert layout.recording.props(scene) == ['["bend_rms"]', '["bend_pair"]']
    with pytest.raises(LayoutError, match="index 2"):
        layout.prop(scene, '["bend_pair"]', index=2)
    with pytest.raises(LayoutError, match="index 0"):
        layout.prop(scene, '["bend_rms"]', index=0)


def test_recorder_catches_a_typo_inside_a_draw_function(scene, monkeypatch):
    add_bend(scene)
    spec = ext().engine.catalog.OPERATORS["rotate_plane"]
    monkeypatch.setitem(
        ext().engine.catalog.OPERATORS, "rotate_plane", type(spec)(spec.name, spec.summary, options=("planee",))
    )
    ext().blender.bend_stack.bends(scene)[0].op = "rotate_plane"
    with pytest.raises(LayoutError, match="planee"):
        draw_fn(module("panels.sequencer").draw_bends, bpy.context)


@pytest.mark.parametrize(
    "draw, match",
    [
        (lambda lay, s: lay.prop(s.render, "resolution_xx"), "resolution_xx"),
        (lambda lay, s: lay.prop(s, '["bend_nope"]'), "bend_nope"),
        (lambda lay, s: lay.prop(s, '["bend_nope'), "custom property path"),
        (lambda lay, s: lay.prop(s.render, '["bend_rms"]'), "custom propert"),
        (lambda lay, s: lay.prop(None, "name"), "None"),
        (lambda lay, s: lay.prop(s, "name", txt="Name"), "txt"),
        (lambda lay, s: lay.prop(s, "name", text=3), "str"),
        (lambda lay, s: lay.prop(s, "name", icon="NO_SUCH_ICON"), "NO_SUCH_ICON"),
        (lambda lay, s: lay.prop(s), "property"),
        (lambda lay, s: lay.label(text="x", icon="NO_SUCH_ICON"), "NO_SUCH_ICON"),
        (lambda lay, s: lay.operator("bend.no_such_operator"), "not registered"),
        (lambda lay, s: lay.operator("no_dot"), "module.name"),
        (lambda lay, s: setattr(lay.operator("wm.path_open"), "filepathh", "/"), "filepathh"),
        (lambda lay, s: setattr(lay.operator("wm.path_open"), "filepath", 1), "str"),
        (lambda lay, s: setattr(lay.row(), "use_propery_split", True), "use_propery_split"),
        (lambda lay, s: setattr(lay.row(), "enabled", 1), "bool"),
        (lambda lay, s: setattr(lay, "alignment", "MIDDLE"), "MIDDLE"),
        (lambda lay, s: setattr(lay, "direction", "VERTICAL"), "read-only"),
        (lambda lay, s: lay.rows(), "rows"),
        (lambda lay, s: lay.prop_search(s.bend.audio_bake, "strip", s, "objectss"), "objectss"),
        (lambda lay, s: lay.prop_search(s.bend.audio_bake, "strip", s, "frame_start"), "not a collection"),
        (lambda lay, s: lay.template_list("BEND_UL_nope", "", s.bend, "bends", s.bend, "bend_index"), "UIList"),
        (lambda lay, s: lay.template_list("BEND_UL_bends", "", s.bend, "bendz", s.bend, "bend_index"), "bendz"),
        (lambda lay, s: lay.template_list("BEND_UL_bends", "", s.bend, "bends", s.bend, "mode"), "not an int"),
        (lambda lay, s: lay.menu("BEND_MT_nope"), "Menu"),
    ],
)
def test_recorder_rejects(scene, draw, match):
    with pytest.raises(LayoutError, match=match):
        draw(RecordingLayout(), scene)


def test_recorder_tracks_inherited_state(scene):
    layout = RecordingLayout()
    row = layout.row()
    row.enabled = False
    row.column().label(text="Inside")
    layout.label(text="Outside")
    inside, outside = layout.recording.named("label")
    assert inside.state["enabled"] is False and outside.state["enabled"] is True


# --- registration -------------------------------------------------------------------------------------------


def test_sequencer_panels_in_order():
    seq = module("panels.sequencer")
    expected = ["Model", "Prompts", "Audio", "Bends", "Sweep", "Preview", "Render"]
    ours = [c for c in panel_classes() if c.bl_space_type == "SEQUENCE_EDITOR"]
    panels = sorted((c for c in ours if not getattr(c, "bl_parent_id", "")), key=lambda c: c.bl_order)
    assert [(c.bl_label, c.bl_parent_id) for c in ours if getattr(c, "bl_parent_id", "")] == [
        ("LoRAs", "BEND_PT_bends")
    ]
    assert [c.bl_label for c in panels] == expected
    for cls in panels:
        assert (cls.bl_region_type, cls.bl_category) == ("UI", "Bend")
        assert cls.__module__ == seq.__name__
        assert getattr(bpy.types, cls.__name__) is cls  # registered


def test_graph_editor_has_the_bends_panel():
    [cls] = [c for c in panel_classes() if c.bl_space_type == "GRAPH_EDITOR"]
    assert (cls.bl_region_type, cls.bl_category, cls.bl_label) == ("UI", "Bend", "Bends")
    assert getattr(bpy.types, cls.__name__) is cls


def test_every_extension_panel_draws_in_an_empty_scene(scene, deps):
    classes = panel_classes()
    assert len(classes) >= 6
    for cls in classes:
        draw_panel(cls)


# --- dependencies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("missing", [[], ["torch", "kornia"]])
def test_dependency_box(scene, deps, online, missing):
    deps.missing, deps.online = missing, online
    rec = draw_fn(module("panels.dependencies").draw_dependencies, bpy.context)
    install = rec.operator("bend.install_dependencies")
    assert install.state["enabled"] is online
    assert install["text"] == ("Install Dependencies" if missing else "Reinstall Dependencies")
    labels = " | ".join(rec.labels())
    assert ("Allow Online Access in Preferences > System to install" in labels) is not online
    assert ("torch, kornia" in labels) is bool(missing)
    assert str(module("blender.dependencies").site_packages()) in labels
    assert rec.operator("wm.path_open").result.filepath == str(module("blender.dependencies").site_packages())


@pytest.mark.parametrize(
    "running, returncode, shown",
    [
        (True, None, "Installing..."),
        (False, 1, "Install Failed (Exit Code 1)"),
        (False, 0, None),
        (False, None, None),
    ],
)
def test_dependency_box_shows_the_installer_state(scene, deps, running, returncode, shown):
    deps.missing, deps.running, deps.returncode = ["torch"], running, returncode
    deps.log = [f"line {i}" for i in range(10)]
    for draw in (module("panels.dependencies").draw_dependencies, module("panels.sequencer").draw_model):
        labels = draw_fn(draw, bpy.context).labels()
        if shown is None:
            assert not any(text.startswith(("Install", "line")) for text in labels)
        else:
            assert shown in labels
            assert [text for text in labels if text.startswith("line")] == ["line 7", "line 8", "line 9"]


def test_dependency_check_runs_once_per_draw(scene, monkeypatch):
    calls = []
    monkeypatch.setattr(module("blender.dependencies"), "missing", lambda: calls.append(1) or ["torch"])
    draw_fn(module("panels.dependencies").draw_dependencies, bpy.context)
    assert len(calls) == 1
    draw_panel(panel("BEND_PT_model"))
    assert len(calls) == 2


@pytest.mark.parametrize("online", [True, False])
def test_missing_notice(scene, deps, online):
    notice = module("panels.dependencies").draw_missing_notice
    deps.online = online
    layout = RecordingLayout()
    assert notice(layout) is False
    assert layout.recording.calls == []

    deps.missing = ["diffusers"]
    layout = RecordingLayout()
    assert notice(layout) is True
    rec = layout.recording
    assert rec.operator("bend.install_dependencies").state["enabled"] is online
    assert any("diffusers" in text for text in rec.labels())
    assert [c.state["alert"] for c in rec.named("label") if "diffusers" in c.get("text", "")] == [True]


def test_preferences_draw(scene, deps):
    real = bpy.context.preferences.addons[blender_env.MODULE].preferences

    class Proxy:
        """The preferences, but drawing into the recorder."""

        def __init__(self, layout):
            self.layout = layout

        def __getattr__(self, name):
            return getattr(real, name)

    for missing in ([], ["torch"]):
        deps.missing = missing
        layout = RecordingLayout()
        ext().blender.preferences.BendPreferences.draw(Proxy(layout), bpy.context)
        rec = layout.recording
        assert {"model_source", "device", "precision", "engine_python", "preview_idle_minutes"} <= set(rec.props())
        assert "bend.install_dependencies" in rec.operators()


# --- Model ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
@pytest.mark.parametrize("phase_mode", ["LOOP", "CUSTOM"])
@pytest.mark.parametrize("prompt_source", ["MIX", "CUSTOM"])
def test_model_panel(scene, deps, mode, phase_mode, prompt_source):
    settings = scene.bend
    settings.mode, settings.phase_mode, settings.img2img_prompt_source = mode, phase_mode, prompt_source
    rec = draw_panel(panel("BEND_PT_model"))
    drawn = set(rec.props(settings))
    assert {
        "model_source",
        "mode",
        "steps",
        "guidance",
        "seed",
        "scheduler",
        "batch_size",
        "noise_seed",
        "phase_mode",
    } <= drawn
    img2img = mode == "img2img"
    assert (
        {"strength", "img2img_prompt_source", "init_image"} <= drawn
        if img2img
        else not drawn & {"strength", "img2img_prompt_source", "init_image", "img2img_prompt"}
    )
    assert ("img2img_prompt" in drawn) is (img2img and prompt_source == "CUSTOM")
    assert ("noise_phase" in drawn) is (phase_mode == "CUSTOM")
    assert rec.prop_call(settings, "batch_size").state["active"] is not img2img
    assert "bend.install_dependencies" not in rec.operators()


def test_model_panel_output_labels(scene, deps):
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 1001, 777, 50
    scene.render.fps, scene.render.fps_base = 30000, 1001.0
    scene.frame_start, scene.frame_end = 5, 80
    labels = " | ".join(draw_panel(panel("BEND_PT_model")).labels())
    assert "496 × 384" in labels  # 500.5 → 496, 388.5 → 384
    assert "29.97 fps" in labels
    assert "5–80" in labels
    assert module("blender.scene_job").output_size(scene) == (496, 384)  # what the job renders


def test_model_panel_model_hint(scene, deps):
    prefs = bpy.context.preferences.addons[blender_env.MODULE].preferences
    old = prefs.model_source
    try:
        prefs.model_source = ""
        rec = draw_panel(panel("BEND_PT_model"))
        assert rec.prop_call(scene.bend, "model_source")["placeholder"] == "Preferences: Not Set"
        assert any(c.state["alert"] for c in rec.named("label"))
        prefs.model_source = "tiny-random"
        rec = draw_panel(panel("BEND_PT_model"))
        assert rec.prop_call(scene.bend, "model_source")["placeholder"] == "Preferences: tiny-random"
        assert not any(c.state["alert"] for c in rec.named("label"))
    finally:
        prefs.model_source = old


def test_model_panel_shows_the_missing_notice_first(scene, deps):
    deps.missing = ["torch"]
    rec = draw_panel(panel("BEND_PT_model"))
    assert rec.operators()[0] == "bend.install_dependencies"
    assert rec.calls.index(rec.operator("bend.install_dependencies")) < rec.calls.index(
        rec.prop_call(scene.bend, "model_source")
    )
    for name in ("BEND_PT_prompts", "BEND_PT_audio", "BEND_PT_bends", "BEND_PT_render", "BEND_PT_graph_bends"):
        assert "bend.install_dependencies" not in draw_panel(panel(name)).operators()


# --- Prompts --------------------------------------------------------------------------------------------------


def test_prompts_panel_empty(scene, deps):
    rec = draw_panel(panel("BEND_PT_prompts"))
    [lst] = rec.named("template_list")
    assert (lst["listtype_name"], lst["propname"], lst["active_propname"]) == (
        "BEND_UL_prompts",
        "prompts",
        "prompt_index",
    )
    assert {"bend.prompt_add", "bend.prompt_remove", "bend.crossfade_at_markers"} <= set(rec.operators())
    assert "negative_prompt" in rec.props(scene.bend)


def test_prompt_rows(scene, deps):
    for text, weight in (("a cat", 1.0), ("", 0.25)):
        prompt = scene.bend.prompts.add()
        prompt.text, prompt.weight = text, weight
    draw_panel(panel("BEND_PT_prompts"))
    recordings = draw_items("BEND_UL_prompts", scene.bend, "prompts", "prompt_index")
    assert len(recordings) == 6
    for rec in recordings[:4]:  # DEFAULT and COMPACT
        assert rec.props() == ["text", "weight"]


# --- Audio ----------------------------------------------------------------------------------------------------


def test_audio_panel_without_sequence_editor(scene, deps):
    # A new scene has no sequence editor. (sequence_editor_clear() on the home file's scene made the next
    # read_homefile crash in the 5.0 bpy module.)
    scene = bpy.data.scenes.new("Bare")
    bake = scene.bend.audio_bake
    context = types.SimpleNamespace(scene=scene, preferences=bpy.context.preferences)
    rec = draw_panel(panel("BEND_PT_audio"), context)
    assert scene.sequence_editor is None, "drawing must not create data"
    assert {"source", "strip", "window_ms", "centered", "spectrum_window", "normalization", "attack", "release"} <= set(
        rec.props(bake)
    )
    assert rec.named("prop_search") == []
    assert "bend.bake_audio" in rec.operators()
    # Before a bake the scene has no features to show (drawing them would draw errors); it says so.
    features = ext().blender.audio_features
    assert rec.props(scene) == [] and "Bake to see the features" in rec.labels()
    features.ensure(scene)  # as a bake does
    rec = draw_panel(panel("BEND_PT_audio"), context)
    names = list(ext().engine.catalog.FEATURE_NAMES)
    assert rec.props(scene) == [features.path(name) for name in names]
    labels = ext().blender.properties.FEATURE_LABELS
    assert [c["text"] for c in rec.named("prop") if c["data"] == scene] == [labels[name][0] for name in names]
    assert "Bake to see the features" not in rec.labels()


def test_audio_panel_searches_strips(scene, deps):
    scene.sequence_editor_create()
    rec = draw_panel(panel("BEND_PT_audio"))
    [search] = rec.named("prop_search")
    assert search["data"] == scene.bend.audio_bake and search["property"] == "strip"
    assert search["search_data"] == scene.sequence_editor
    assert "strip" not in rec.props(scene.bend.audio_bake)


def test_audio_panel_lists_a_sound_strip(scene, deps, tmp_path):
    compat = ext().blender.compat
    if not compat.has_audio():
        pytest.skip("this bpy module is built without Audaspace")
    import wave

    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 8000)
    strip = compat.strips(scene).new_sound("Song", str(path), 1, 1)
    scene.bend.audio_bake.strip = strip.name
    [search] = draw_panel(panel("BEND_PT_audio")).named("prop_search")
    collection = getattr(search["search_data"], search["search_property"])
    assert strip.name in collection


def test_audio_panel_mixdown_has_no_strip(scene, deps):
    scene.bend.audio_bake.source = "MIXDOWN"
    scene.sequence_editor_create()
    rec = draw_panel(panel("BEND_PT_audio"))
    assert "strip" not in rec.props(scene.bend.audio_bake) and rec.named("prop_search") == []


def test_audio_panel_shows_animated_features(scene, deps):
    features = ext().blender.audio_features
    features.ensure(scene)
    for frame, value in ((1, 0.0), (11, 1.0)):
        scene[features.key("rms")] = value
        scene.keyframe_insert(features.path("rms"), frame=frame)
    scene.frame_set(6)
    rec = draw_panel(panel("BEND_PT_audio"))
    assert features.path("rms") in rec.props(scene)
    # The field reads the evaluated value at frame 6.
    assert scene[features.key("rms")] == pytest.approx(0.5, abs=0.1)
    assert features.value(scene, "rms") == scene[features.key("rms")]
    assert any("Frame 6" in text for text in rec.labels())


# --- Bends ----------------------------------------------------------------------------------------------------


def test_bends_panel_empty(scene, deps):
    rec = draw_panel(panel("BEND_PT_bends"))
    assert rec.named("template_ID") == []  # the stack is the scene's own lists: nothing to choose
    assert rec.props() == []
    add_bend(scene)
    for recording in (rec, draw_panel(panel("BEND_PT_bends"))):  # the list, empty or not
        [lst] = recording.named("template_list")
        names = (lst["listtype_name"], lst["dataptr"], lst["propname"], lst["active_dataptr"], lst["active_propname"])
        assert names == ("BEND_UL_bends", scene.bend, "bends", scene.bend, "bend_index")
    ops = rec.operators()
    assert {"bend.bend_add", "bend.bend_remove", "bend.bend_duplicate"} <= set(ops)
    moves = [c.result.direction for c in rec.named("operator") if c["operator"] == "bend.bend_move"]
    assert moves == ["UP", "DOWN"]


def test_bends_panel_active_index_out_of_range(scene, deps):
    add_bend(scene)
    scene.bend.bend_index = 5
    assert draw_panel(panel("BEND_PT_bends")).props() == []
    scene.bend.bend_index = -1
    assert draw_panel(panel("BEND_PT_bends")).props() == []


def test_bend_rows(scene, deps):
    add_bend(scene, "On")
    add_bend(scene, "Off", enabled=False, op="erode")
    on_bend, off_bend = scene.bend.bends
    recordings = draw_items("BEND_UL_bends", scene.bend, "bends", "bend_index")
    on, off = recordings[0], recordings[1]
    assert on.props() == ["enabled", "name"] and off.props() == ["enabled", "name"]
    assert "Erode" in off.labels()
    assert off.prop_call(off_bend, "name").state["active"] is False
    assert on.prop_call(on_bend, "name").state["active"] is True


def test_stack_lists_show_their_own_items_in_stack_order(scene, deps):
    stack = ext().blender.bend_stack
    add_bend(scene, "First")
    add_bend(scene, "Second")
    bpy.ops.bend.lora_add(filepath="/loras/Style.safetensors")
    assert bpy.ops.bend.bend_move(direction="UP") == {"FINISHED"}  # Second applies first now
    assert [b.name for b in stack.bends(scene)] == ["Second", "First"] and scene.bend.bend_index == 0
    # Blender's own filtering and order: the rows are the list's items in list order, each list its own items.
    for ui_list in (bpy.types.BEND_UL_bends, bpy.types.BEND_UL_loras):
        assert not any("filter_items" in vars(cls) for cls in ui_list.__mro__ if cls is not bpy.types.UIList)
    for list_name, collection, active, shown in (
        ("BEND_UL_bends", "bends", "bend_index", ["Second", "First"]),
        ("BEND_UL_loras", "loras", "lora_index", ["Style"]),
    ):
        rows = draw_items(list_name, scene.bend, collection, active)[: len(shown)]  # the DEFAULT layout's rows
        names = [next(c["data"].name for c in row.named("prop") if c["property"] == "name") for row in rows]
        assert names == shown, list_name
    first = scene.bend.bends["First"]
    scene.bend.bend_index = 1  # a click on a row
    assert stack.active_bend(scene) == first and stack.active_lora(scene) == scene.bend.loras["Style"]


def test_loras_panel(scene, deps):
    rec = draw_panel(panel("BEND_PT_loras"))
    assert {"bend.lora_add", "bend.lora_remove"} <= set(rec.operators()) and rec.props() == []
    bpy.ops.bend.lora_add(filepath="/loras/Style.safetensors")
    lora = ext().blender.bend_stack.active_lora(scene)
    rec = draw_panel(panel("BEND_PT_loras"))
    [lst] = rec.named("template_list")
    names = (lst["listtype_name"], lst["dataptr"], lst["propname"], lst["active_dataptr"], lst["active_propname"])
    assert names == ("BEND_UL_loras", scene.bend, "loras", scene.bend, "lora_index")
    assert rec.props(lora) == ["filepath", "weight"]
    assert rec.prop_call(lora, "weight").state["use_property_decorate"] is True  # its keyframe dot
    [row] = draw_items("BEND_UL_loras", scene.bend, "loras", "lora_index")[:1]
    assert row.props(lora) == ["name", "weight"]


@pytest.mark.parametrize("op", list(blender_env.extension().engine.catalog.OPERATORS))
def test_bends_panel_every_operator_place_and_selection(scene, deps, op):
    catalog = ext().engine.catalog
    spec = catalog.OPERATORS[op]
    add_bend(scene, "First")
    add_bend(scene, "Second")
    bend, second = scene.bend.bends
    scene.bend.bend_index = 0
    bend.op = op
    option_props = set(catalog.OPTIONS)  # BendFields has one property per option key
    for place in ("LATENT", "UNET"):
        for selection in catalog.SELECTIONS:
            for driven in (False, True):
                bend.place, bend.selection = place, selection
                if driven:
                    bend.driver_add("param")  # as right-click Add Driver does
                for cls in (panel("BEND_PT_bends"), panel("BEND_PT_graph_bends")):
                    rec = draw_panel(cls)
                    drawn = rec.props(bend)
                    assert rec.props(second) == []  # only the active bend's settings
                    assert {"op", "place", "selection"} <= set(drawn)
                    assert ("latent_layer" in drawn) is (place == "LATENT")
                    assert (
                        {"unet_target", "step_start", "step_end"} <= set(drawn)
                        if place == "UNET"
                        else not ({"unet_target", "step_start", "step_end"} & set(drawn))
                    )
                    assert ("selection_index" in drawn) is (selection in ("channel", "row", "column"))
                    random = selection.startswith("random")
                    assert ("fraction" in drawn) is random and ("selection_seed" in drawn) is random
                    assert set(drawn) & option_props == set(spec.options)
                    vector = spec.takes_param and spec.param.is_vector
                    assert ("param" in drawn) is (spec.takes_param and not vector)
                    if vector:  # one field per component, labelled with the catalog's names
                        fields = [c for c in rec.named("prop") if c["data"] == bend and c["property"] == "param_vector"]
                        assert [(c["index"], c["text"]) for c in fields] == list(enumerate(spec.param.names))
                        assert all(c.state["use_property_decorate"] for c in fields)  # keyframe dots
                    else:
                        assert "param_vector" not in drawn
                    ops = rec.operators()
                    assert ("bend.drive_from_feature" in ops) is spec.takes_param
                    assert ("bend.drive_from_embedding" in ops) is spec.takes_param
                    assert ("bend.remove_feature_driver" in ops) is (spec.takes_param and driven)
                if driven:
                    bend.driver_remove("param")


def test_bends_panel_flags_a_layer_past_the_last_step(scene, deps):
    bend = add_bend(scene, latent_layer=51)
    scene.bend.steps = 50
    rec = draw_panel(panel("BEND_PT_bends"))
    assert rec.prop_call(bend, "latent_layer").state["alert"] is True
    bend.latent_layer = 50
    assert draw_panel(panel("BEND_PT_bends")).prop_call(bend, "latent_layer").state["alert"] is False


def test_graph_panel_draws_what_the_sequencer_draws(scene, deps):
    add_bend(scene, op="rotate_plane", place="UNET", selection="random")

    def summary(rec):
        return [(c.name, c.get("property"), c.get("operator"), c.get("text")) for c in rec.calls]

    assert summary(draw_panel(panel("BEND_PT_graph_bends"))) == summary(draw_panel(panel("BEND_PT_bends")))


# --- Render ---------------------------------------------------------------------------------------------------


def test_render_panel(scene, deps):
    scene.name = "Song: Take 2"
    rec = draw_panel(panel("BEND_PT_render"))
    call = rec.prop_call(scene.bend, "output_folder")
    assert call["placeholder"] == f"//bend/{bpy.path.clean_name(scene.name)}/"
    assert rec.operators() == ["bend.render", "bend.export_video"]
    assert [c["text"] for c in rec.named("operator")] == ["Render Bent Frames", "Export Bent Video"]


def test_preview_panel(scene, deps):
    scene.frame_current = 7
    rec = draw_panel(panel("BEND_PT_preview"))
    assert {"steps", "scale", "compare"} <= set(rec.props())
    assert rec.operators() == ["bend.preview_frame", "bend.preview_release", "bend.live_preview"]
    assert [c["text"] for c in rec.named("operator")] == ["Preview Frame 7", "Release GPU", "Live Preview"]


def test_sweep_panel(scene, deps):
    assert [c["text"] for c in draw_panel(panel("BEND_PT_sweep")).named("label")] == ["Add a bend to sweep it"]
    bpy.ops.bend.bend_add(op="rotate_r1")
    rec = draw_panel(panel("BEND_PT_sweep"))
    assert {"value_start", "value_end", "columns", "include_end", "layers"} <= set(rec.props())
    assert [c["text"] for c in rec.named("operator")] == ["Sweep R1"]
    scene.bend.bends["R1"].op = "reflect"  # no parameter: layers only
    rec = draw_panel(panel("BEND_PT_sweep"))
    assert "value_start" not in rec.props() and "layers" in rec.props()


def test_render_panel_warns_about_an_unsaved_file(scene, deps, tmp_path):
    def warned() -> bool:
        return any(c.state["alert"] for c in draw_panel(panel("BEND_PT_render")).named("label"))

    assert warned()  # the default folder is relative to a file that does not exist yet
    scene.bend.output_folder = str(tmp_path)
    assert not warned()
    scene.bend.output_folder = "//frames/"
    assert warned()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "song.blend"))
    assert not warned()
