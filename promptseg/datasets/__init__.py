"""Datasets: a neutral in-memory model and lossless export / import of COCO, YOLO, Pascal VOC and
Label Studio, plus deterministic splits.

```
Dataset(items=[DatasetItem(path, width, height, detections), ...], categories=[...])
export_coco / import_coco              annotations.json (RLE or polygons)
export_yolo / import_yolo              data.yaml, images/<split>/, labels/<split>/*.txt
export_voc / import_voc                Annotations/*.xml, ImageSets/Main/<split>.txt
export_labelstudio / import_labelstudio  Label Studio JSON tasks (rectangles + brush RLE or polygons)
split(dataset, ratios, seed)           {"train", "val", "test"} by a stable hash of each path
```
"""

from __future__ import annotations

from promptseg.datasets.exports import Dataset, DatasetItem, Splits, export_coco, import_coco
from promptseg.datasets.labelstudio import (
    decode_brush_rle,
    encode_brush_rle,
    export_labelstudio,
    import_labelstudio,
)
from promptseg.datasets.splits import split, split_of
from promptseg.datasets.voc import export_voc, import_voc
from promptseg.datasets.yolo import export_yolo, import_yolo

__all__ = [
    "Dataset",
    "DatasetItem",
    "Splits",
    "decode_brush_rle",
    "encode_brush_rle",
    "export_coco",
    "export_labelstudio",
    "export_voc",
    "export_yolo",
    "import_coco",
    "import_labelstudio",
    "import_voc",
    "import_yolo",
    "split",
    "split_of",
]
