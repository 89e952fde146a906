"""The README's custom selector example is real: extract it and run it through the CLI."""
import os
import re

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from conftest import ROOT, run_cli


def test_readme_custom_selector_runs(tmp_path, sample_dir):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    block = readme.split("<!-- custom-selector-example -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 25
    (tmp_path / "my_filters.py").write_text(code)
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"input": str(sample_dir / "pool"), "output": str(out), "workers": 2,
                                   "stages": [{"my_filters:KeywordSelector": {"words": ["telescope", "comet"],
                                                                              "min_hits": 2}}]}))
    run_cli("select", cfg, env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    t = pq.read_table(out / "data")
    low = pc.utf8_lower(t.column("text"))
    hits = pc.add(pc.count_substring(low, "telescope"), pc.count_substring(low, "comet")).to_numpy()
    assert t.num_rows > 0 and (hits >= 2).all()
    src = pq.read_table(sample_dir / "pool")
    slow = pc.utf8_lower(src.column("text"))
    shits = pc.add(pc.count_substring(slow, "telescope"), pc.count_substring(slow, "comet")).to_numpy()
    assert t.num_rows == int((shits >= 2).sum())
