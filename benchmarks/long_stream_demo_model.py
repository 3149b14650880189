"""Train the GRW model of `grw-edge demo` alone (its DemoSettings and TrainConfig: 300 steps,
batch 8) for the long-stream table: ``python benchmarks/long_stream_demo_model.py OUT``."""
import sys
import time

from grw_edge.data.synthetic import make_synthetic_dataset
from grw_edge.demo import DemoSettings, BACKBONE
from grw_edge.training import TrainConfig, train
s = DemoSettings(); t = time.time(); out = sys.argv[1]
make_synthetic_dataset(f"{out}/data", videos_per_class=s.videos_per_class,
                       test_videos_per_class=s.test_videos_per_class, frames=s.video_frames,
                       size=s.video_size, fps=s.fps, seed=s.seed)
cfg = TrainConfig(backbone=BACKBONE, data=f"{out}/data", out=f"{out}/run", frames=s.clip_frames,
                  fps=s.fps, resolution=s.resolution, T=s.T, grw_weight=s.grw_weight,
                  embed_dim=s.embed_dim, head_depth=1, head_heads=4, head_mlp=2 * s.embed_dim,
                  steps=s.steps, batch_size=s.batch_size, lr=s.lr, warmup_steps=10,
                  ema_decay=0.98, checkpoint_every=s.steps, log_every=50, seed=s.seed)
print(train(cfg), time.time() - t)
