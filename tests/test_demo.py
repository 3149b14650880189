"""The offline demo, end to end at toy sizes."""
from PIL import Image

from grw_edge.demo import DemoSettings, run_demo


def test_demo_writes_a_report_with_plots(tmp_path):
    settings = DemoSettings(videos_per_class=2, test_videos_per_class=2, video_frames=8,
                            steps=3, batch_size=4, embed_dim=16)
    lines = []
    report = run_demo(tmp_path / "demo", settings, echo=lines.append)
    text = report.read_text()
    for section in ("## Accuracy on the test split", "| A0S GRW |", "| A0S no GRW |",
                    "## Export parity", "| onnxruntime |", "fvcore: backbone"):
        assert section in text
    assert "agreement 100.0%" in text
    for plot in ("training_curves.png", "trajectories.png"):
        with Image.open(tmp_path / "demo" / plot) as image:
            assert image.size[0] > 400 and image.getextrema() != ((255, 255),) * 3
    assert any("training A0S GRW" in line for line in lines)
    assert (tmp_path / "demo" / "a0s-grw-onnx" / "manifest.json").is_file()
