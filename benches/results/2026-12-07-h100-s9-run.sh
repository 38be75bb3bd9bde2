for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
echo "== conformance"; timeout 200 ./.bin/conformance --backend webgpu --adapter vulkan --op gemm,batched_gemm,gemm_q,half_storage,attention,attention_ex,misuse --cases 32 2>&1 | grep -v XDG | tail -14
CASES=gemm_q_,binary_f16,reduce_f16,gemm_skinny,attention_decode
echo "== torch"; python3 benches/reference/torch_baseline.py --only $CASES --json $OUT/torch.json 2>&1 | tail -20
echo "== ours"; ./.bin/bench --backend webgpu --adapter vulkan --only $CASES --compare $OUT/torch.json --json $OUT/ours.json 2>&1 | grep -v XDG
echo "== before (3518a5a)"; ./.bin/bench_old --backend webgpu --adapter vulkan --only $CASES --compare $OUT/torch.json --json $OUT/old.json 2>&1 | grep -v XDG
echo "== ours, BACKEND_GEMM_Q_DECODE_ROW=1 (decode_row)"; BACKEND_GEMM_Q_DECODE_ROW=1 ./.bin/bench --backend webgpu --adapter vulkan --only 4096x4096_n1 --compare $OUT/torch.json 2>&1 | grep -v XDG
