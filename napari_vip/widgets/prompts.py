"""The "VIP prompts" dock: concept prompts per finding, from the symptom library, a language model or a region.

Per finding (class) a list of concept prompts the user can type, edit (double-click), reorder (drag or
Up/Down), enable or disable (check box).  Concepts come from:

- the symptom library ("Fill from symptom library": the bundled library merged with the user's, or a file);
- a language model ("Generate with language model", for the selected finding; runs in a plain Python
  thread that never touches Qt, polled by a timer, so the viewer never waits);
- the selected marker's region ("Describe selected marker's region"): the "VIP current mask" Labels
  layer when it holds a mask on this image, else the selected marker's box, in words.

"Classify with concepts" scores each finding by the mean of its enabled concept embeddings in the
worker and shows the probabilities and, per finding, the concept that scored highest.  "Save library…"
writes the enabled concepts to a library file (by default the user's library).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..core.errors import VipInputError
from ..core.prompts import MODALITIES
from ..core.region_concepts import VARIANTS, describe_region
from ..core.symptoms import descriptors_for, load_library, save_library, user_library_path
from ..layers import CURRENT_LAYER, MARKERS_LAYER, image_plane, markers_from_layer, model_input
from .dock import VipDock
from .form_rows import browse_row, button, hbox
from .layer_choice import ImageLayerChooser
from .llm_box import LlmBox
from .model_picker import ModelPicker
from .results_view import ProbabilityTable
from .status_text import show_failure, untrained_prefix, warning_html

DEFAULT_FINDINGS = {"fundus photograph": ["diabetic retinopathy", "glaucoma", "normal"],
                    "chest x-ray": ["pneumonia", "normal"]}
VARIANT_LABELS = {"p1": "p1 keyword", "p2": "p2 + shape", "p3": "p3 + colour", "p4": "p4 + size",
                  "p5": "p5 + number", "p6": "p6 + location (full)"}
CONCEPT_FLAGS = (Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsEditable | Qt.ItemIsUserCheckable
                 | Qt.ItemIsDragEnabled)


class PromptsWidget(VipDock):
    """Dock: concept prompts per finding, and classification by concepts.

    Attributes
    ----------
    concepts : dict of str to list of [str, bool]
        Finding -> its concepts as ``[text, enabled]``, in order (the lists mirror the dock).
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        from ..worker.concepts import CONCEPT_TEMPLATE

        self.concepts: dict[str, list[list]] = {}
        self.last_result = None
        self.last_region = None
        self._current: str | None = None

        # -- image and findings
        self.image_combo = ImageLayerChooser(napari_viewer)
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.class_list = QListWidget()
        self.class_list.setMaximumHeight(100)
        self.new_class = QLineEdit()
        self.new_class.setPlaceholderText("new finding")
        self.new_class.returnPressed.connect(lambda: self.add_class(self.new_class.text()))
        add_cls = button("Add", lambda: self.add_class(self.new_class.text()))
        rm_cls = button("Remove", self.remove_class)

        # -- concepts of the selected finding
        self.concept_list = QListWidget()
        self.concept_list.setDragDropMode(QAbstractItemView.InternalMove)
        self.concept_list.setDefaultDropAction(Qt.MoveAction)
        self.concept_list.setMinimumHeight(120)
        self.new_concept = QLineEdit()
        self.new_concept.setPlaceholderText("type a concept, e.g. air bronchogram, and press Enter")
        self.new_concept.returnPressed.connect(self._add_typed)
        concept_buttons = [button("Add", self._add_typed), button("Remove", self.remove_selected_concepts),
                           button("Up", lambda: self.move_selected(-1)), button("Down", lambda: self.move_selected(1))]

        # -- sources
        self.library_path = QLineEdit()
        self.library_path.setPlaceholderText("bundled + yours (or a library .json)")
        self.fill_btn = button("Fill from symptom library", self.fill_from_library)
        self.save_btn = button("Save library…", self._save_dialog)
        self.llm = LlmBox(self.bridge, self.status, self.current_class, self.modality_text, self._on_descriptors)
        self.llm_url, self.llm_model, self.llm_btn = self.llm.url, self.llm.model, self.llm.button
        self.keyword = QLineEdit()
        self.keyword.setPlaceholderText("keyword (default: the selected finding)")
        self.variant = QComboBox()
        for k in VARIANTS:
            self.variant.addItem(VARIANT_LABELS[k], k)
        self.variant.setCurrentIndex(len(VARIANTS) - 1)
        self.describe_btn = button("Describe selected marker's region", self.describe_selected_region)

        # -- classification
        self.template = QLineEdit(CONCEPT_TEMPLATE)
        self.marker_text = QCheckBox("add the marker phrase ('… indicated by a red circle')")
        self.marker_text.setChecked(True)
        self.model = ModelPicker()
        self.classify_btn = button("Classify with concepts", self.classify)
        self.cancel_btn = button("Cancel", self.bridge.cancel_all)
        self.cancel_btn.setEnabled(False)
        self.results = ProbabilityTable()
        self.best = QTableWidget(0, 0)
        self.best.setToolTip("Per finding and condition: the concept most similar to the image (cosine similarity)")

        # -- layout
        top = QGroupBox("Findings")
        tf = QFormLayout(top)
        tf.addRow("image", self.image_combo)
        tf.addRow("modality", self.modality)
        tf.addRow(self.class_list)
        tf.addRow(hbox(self.new_class, add_cls, rm_cls))
        self.concepts_box = QGroupBox("Concepts")
        self.concepts_box.setToolTip("Check to use; double-click to edit; drag (or Up/Down) to reorder.")
        self.concept_list.setToolTip("Check to use; double-click to edit; drag (or Up/Down) to reorder.")
        cl = QVBoxLayout(self.concepts_box)
        cl.addWidget(self.concept_list)
        cl.addLayout(hbox(self.new_concept, *concept_buttons))
        sources = QGroupBox("Concept sources")
        sf = QFormLayout(sources)
        sf.addRow("library", browse_row(self.library_path, self._browse_library))
        sf.addRow(hbox(self.fill_btn, self.save_btn))
        sf.addRow(self.llm)
        sf.addRow("keyword", self.keyword)
        sf.addRow("prompt", self.variant)
        sf.addRow(self.describe_btn)
        cls_box = QGroupBox("Classify with concepts")
        cf = QFormLayout(cls_box)
        cf.addRow("sentence", self.template)
        cf.addRow(self.marker_text)
        cf.addRow(self.model)
        cf.addRow(hbox(self.classify_btn, self.cancel_btn))
        lay = QVBoxLayout(self)
        for w in (top, self.concepts_box, sources, cls_box):
            lay.addWidget(w)
        lay.addWidget(self.status)
        lay.addWidget(self.results)
        lay.addWidget(QLabel("Best concept per finding"))
        lay.addWidget(self.best)

        self.class_list.currentTextChanged.connect(self._on_class_selected)
        self.class_list.itemChanged.connect(self._on_class_renamed)
        self.concept_list.itemChanged.connect(lambda item=None: self._store_concepts())
        self.concept_list.model().rowsMoved.connect(lambda *a: QTimer.singleShot(0, self._store_concepts))
        self.bridge.busy_changed.connect(self.cancel_btn.setEnabled)
        self.viewer.layers.events.inserted.connect(self.image_combo.refresh)
        self.viewer.layers.events.removed.connect(self.image_combo.refresh)
        self.image_combo.refresh()
        layer = self.image_layer(required=False)
        modality = (layer.metadata.get("vip_modality") if layer is not None else None) or "chest x-ray"
        self.modality.setCurrentText(modality)
        self.set_classes(DEFAULT_FINDINGS.get(modality, DEFAULT_FINDINGS["chest x-ray"]))

    # -- findings and their concepts ---------------------------------------------------------------------------
    def classes(self) -> list[str]:
        return list(self.concepts)

    def set_classes(self, names) -> None:
        """Replace the findings (concepts of findings kept by name are kept)."""
        self._store_concepts()
        old = self.concepts
        self.concepts = {n: old.get(n, []) for n in (str(x).strip() for x in names) if n}
        self._current = None
        self.class_list.blockSignals(True)
        self.class_list.clear()
        for n in self.concepts:
            item = QListWidgetItem(n)
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsEditable)
            self.class_list.addItem(item)
        self.class_list.blockSignals(False)
        if self.concepts:
            self.select_class(next(iter(self.concepts)))
        else:
            self._show_concepts(None)

    def add_class(self, name: str) -> None:
        name = " ".join(str(name).split())
        if not name:
            return
        if name.casefold() in (c.casefold() for c in self.concepts):
            self.status.setText(warning_html(f"{name!r} is already a finding."))
            return
        self.set_classes(self.classes() + [name])
        self.select_class(name)
        self.new_class.clear()

    def remove_class(self) -> None:
        name = self.current_class()
        if name is not None:
            self.set_classes([c for c in self.classes() if c != name])

    def select_class(self, name: str) -> None:
        items = self.class_list.findItems(name, Qt.MatchExactly)
        if items:
            self.class_list.setCurrentItem(items[0])
            self._on_class_selected(name)

    def current_class(self) -> str | None:
        return self._current

    def _on_class_selected(self, name: str) -> None:
        if name == self._current:
            return
        self._store_concepts()
        self._current = name if name in self.concepts else None
        self._show_concepts(self._current)

    def _on_class_renamed(self, item) -> None:
        new = " ".join(item.text().split())
        old = self._current
        if old is None or new == old:
            return
        if not new or new.casefold() in (c.casefold() for c in self.concepts if c != old):
            self.status.setText(warning_html(f"Cannot rename {old!r} to {new!r}: empty or already a finding."))
            self.class_list.blockSignals(True)
            item.setText(old)
            self.class_list.blockSignals(False)
            return
        self._store_concepts()
        self.concepts = {(new if k == old else k): v for k, v in self.concepts.items()}
        self._current = new

    def _show_concepts(self, name) -> None:
        self.concept_list.blockSignals(True)
        self.concept_list.clear()
        for text, enabled in self.concepts.get(name, []) if name else []:
            item = QListWidgetItem(text)
            item.setFlags(CONCEPT_FLAGS)
            item.setCheckState(Qt.Checked if enabled else Qt.Unchecked)
            self.concept_list.addItem(item)
        self.concept_list.blockSignals(False)
        self.concepts_box.setTitle(f"Concepts of {name!r}" if name else "Concepts (add a finding first)")

    def _store_concepts(self) -> None:
        """Copy the concept list of the selected finding into :attr:`concepts` (edits, order, checks)."""
        name = self._current
        if name is None or name not in self.concepts:
            return
        rows = []
        for i in range(self.concept_list.count()):
            item = self.concept_list.item(i)
            text = " ".join(item.text().split())
            if text:
                rows.append([text, item.checkState() == Qt.Checked])
        self.concepts[name] = rows

    def add_concepts(self, name: str, texts, enabled: bool = True) -> int:
        """Append ``texts`` to finding ``name`` (skipping ones it has); returns how many were added."""
        self._store_concepts()
        if name not in self.concepts:
            return 0
        have = {t.casefold() for t, _ in self.concepts[name]}
        added = 0
        for t in texts:
            t = " ".join(str(t).split())
            if t and t.casefold() not in have:
                self.concepts[name].append([t, enabled])
                have.add(t.casefold())
                added += 1
        if name == self._current:
            self._show_concepts(name)
        return added

    def _add_typed(self) -> None:
        name = self.current_class()
        if name is None:
            self.status.setText(warning_html("Add a finding first."))
            return
        if self.add_concepts(name, [self.new_concept.text()]):
            self.new_concept.clear()

    def remove_selected_concepts(self) -> None:
        for item in self.concept_list.selectedItems():
            self.concept_list.takeItem(self.concept_list.row(item))
        self._store_concepts()

    def move_selected(self, step: int) -> None:
        row = self.concept_list.currentRow()
        new = row + step
        if row < 0 or not 0 <= new < self.concept_list.count():
            return
        self.concept_list.blockSignals(True)
        item = self.concept_list.takeItem(row)
        self.concept_list.insertItem(new, item)
        self.concept_list.setCurrentRow(new)
        self.concept_list.blockSignals(False)
        self._store_concepts()

    def enabled_concepts(self) -> dict[str, list[str]]:
        """Finding -> its enabled concepts, in order (what classification and saving use)."""
        self._store_concepts()
        return {c: [t for t, on in rows if on] for c, rows in self.concepts.items()}

    # -- library -----------------------------------------------------------------------------------------------
    def _browse_library(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Symptom library", str(user_library_path().parent),
                                              "Symptom library (*.json)")
        if name:
            self.library_path.setText(name)

    def library(self) -> dict[str, list[str]]:
        path = self.library_path.text().strip()
        return load_library(path or None)

    def fill_from_library(self) -> None:
        """Append the library's descriptors to every finding; say which findings it does not know."""
        try:
            lib = self.library()
        except VipInputError as exc:
            self.status.setText(warning_html(str(exc)))
            return
        modality = self.modality.currentText()
        added, missing = 0, []
        for c in self.classes():
            ds = descriptors_for(lib, c, modality)
            if not ds:
                missing.append(c)
            added += self.add_concepts(c, ds)
        msg = f"Added {added} concept(s) from the symptom library."
        if missing:
            msg += " Not in the library: " + ", ".join(missing) + " (type their concepts, or generate them)."
        self.status.setText(msg)

    def save_to(self, path) -> None:
        """Write the enabled concepts of every finding to the library file ``path`` (disabled ones are left out)."""
        lib = {c: ts for c, ts in self.enabled_concepts().items() if ts}
        if not lib:
            raise VipInputError("There are no enabled concepts to save.")
        save_library(lib, path)
        self.status.setText(f"Saved {sum(map(len, lib.values()))} concept(s) of {len(lib)} finding(s) to {path}.")

    def _save_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save symptom library", str(user_library_path()),
                                              "Symptom library (*.json)")
        if name:
            try:
                self.save_to(name)
            except (VipInputError, OSError) as exc:
                self.status.setText(warning_html(str(exc)))

    # -- language model ----------------------------------------------------------------------------------------
    def generate_with_llm(self) -> bool:
        """Ask the language model for the selected finding's descriptors (see :class:`LlmBox`)."""
        return self.llm.generate()

    @property
    def llm_busy(self) -> bool:
        return self.llm.busy

    def modality_text(self) -> str:
        return self.modality.currentText()

    def _on_descriptors(self, name: str, descriptors) -> None:
        n = self.add_concepts(name, descriptors)
        self.status.setText(f"Added {n} concept(s) for {name!r} from the language model "
                            "(also saved in your symptom library).")

    # -- region concepts ---------------------------------------------------------------------------------------
    def image_layer(self, required: bool = True):
        """The chosen image layer (see :meth:`ImageLayerChooser.layer`)."""
        return self.image_combo.layer(required)

    def region_inputs(self):
        """``(image_rgb, mask or None, box_xyxy or None)`` for the selected marker's region.

        The mask is the "VIP current mask" layer's plane when it has the image's height and width and is
        not empty; the box is the selected marker's (or the only marker's).
        """
        layer = self.image_layer()
        image = model_input(layer, self.viewer.dims)
        hw = image.rgb.shape[:2]
        mask = None
        if CURRENT_LAYER in self.viewer.layers:
            plane = np.asarray(image_plane(self.viewer.layers[CURRENT_LAYER], self.viewer.dims))
            if plane.shape == hw and plane.any():
                mask = plane
        box = None
        if MARKERS_LAYER in self.viewer.layers:
            shapes = self.viewer.layers[MARKERS_LAYER]
            selected = bool(shapes.selected_data)
            if selected or len(shapes.data) == 1:
                markers = markers_from_layer(shapes, layer, selected_only=selected)
                box = markers[0].box_xyxy if markers else None
            elif mask is None and len(shapes.data) > 1:
                raise VipInputError("Several markers: select the one whose region to describe (select tool, S).")
        if mask is None and box is None:
            raise VipInputError("No region: draw a marker on the 'VIP markers' layer (or segment it so the "
                                f"'{CURRENT_LAYER}' layer holds its mask), then describe it.")
        return image.rgb, mask, box

    def describe_selected_region(self):
        """Describe the region in words and add the chosen variant to the selected finding's concepts."""
        name = self.current_class()
        try:
            if name is None:
                raise VipInputError("Add or select a finding to receive the description.")
            rgb, mask, box = self.region_inputs()
            keyword = self.keyword.text().strip() or name
            rc = describe_region(rgb, mask, box, keyword)
        except VipInputError as exc:
            self.status.setText(warning_html(str(exc)))
            return None
        self.last_region = rc
        text = rc.sentence(VARIANTS[self.variant.currentData()])
        self.add_concepts(name, [text])
        where = "mask" if rc.source == "mask" else "marker's box"
        notes = "".join(f"<br>note: {n}" for n in rc.notes)
        self.status.setText(f"From the {where}: <i>{text}</i>{notes}")
        return text

    # -- classification ----------------------------------------------------------------------------------------
    def build_request(self):
        from ..core.prompts import SUFFIXES
        from ..worker.concepts import ConceptClassifyRequest, check_concept_template, check_concepts

        layer = self.image_layer()
        concepts = check_concepts(self.enabled_concepts())
        template = self.template.text()
        check_concept_template(template)
        image = model_input(layer, self.viewer.dims)
        drawn = []
        if MARKERS_LAYER in self.viewer.layers:
            drawn = markers_from_layer(self.viewer.layers[MARKERS_LAYER], layer)
        return ConceptClassifyRequest(image_rgb=image.rgb, markers=drawn, concepts=concepts,
                                      model=self.model.spec(), template=template,
                                      modality=self.modality.currentText(),
                                      marker_text=tuple(SUFFIXES) if self.marker_text.isChecked() else (),
                                      include_baseline=True, device=self.model.device_name(),
                                      notes=list(image.notes))

    def classify(self) -> int | None:
        """Send a concept zero-shot request (newest wins); returns the job id."""
        try:
            req = self.build_request()
        except VipInputError as exc:
            self.status.setText(warning_html(str(exc)))
            return None
        self.status.setText(f"Classifying {len(req.concepts)} finding(s) by their concepts…")
        return self.bridge.submit(req, "VIP concepts", self._on_result, self._on_error, channel="concepts")

    def _on_result(self, result) -> None:
        self.last_result = result
        self.results.show_result(result)
        conds = result.conditions
        self.best.clear()
        self.best.setRowCount(len(result.classes))
        self.best.setColumnCount(len(conds))
        self.best.setHorizontalHeaderLabels([c.name for c in conds])
        self.best.setVerticalHeaderLabels(result.classes)
        for j, cond in enumerate(conds):
            for i, c in enumerate(result.classes):
                k = cond.concepts[c].index(cond.best_concept[c])
                item = QTableWidgetItem(f"{cond.best_concept[c]} ({float(cond.concept_scores[c][k]):.3f})")
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
                self.best.setItem(i, j, item)
        self.best.resizeColumnsToContents()
        warn = untrained_prefix(result.provenance.untrained)
        self.status.setText(warn + "Done.")

    def _on_error(self, failed) -> None:
        show_failure(self.status, failed)

    def best_concept_text(self, row: int, col: int) -> str:
        """The best-concept cell (for tests and accessibility)."""
        item = self.best.item(row, col)
        return item.text() if item is not None else ""

