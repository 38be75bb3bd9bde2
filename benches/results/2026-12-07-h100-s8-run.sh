for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export BACKEND_REQUIRE_ADAPTER=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
echo "== conformance"; timeout 150 ./.bin/conformance --backend webgpu --adapter vulkan --op half_storage,attention_ex,conv2d_ex,gemm_ex,gemm_q,binary_broadcast,gather,cast,misuse,unary_param --cases 32 2>&1 | grep -v XDG | tail -16
CASES=gemm_q_,unary_f16,binary_f16,reduce_f16,attention_gqa_f16,attention_decode_f16,attention_decode_b1,broadcast_,gather_
echo "== torch"; python3 benches/reference/torch_baseline.py --only $CASES --json $OUT/torch.json 2>&1 | tail -16
echo "== ours"; ./.bin/bench --backend webgpu --adapter vulkan --only $CASES --compare $OUT/torch.json --json $OUT/ours.json 2>&1 | grep -v XDG
echo "== ours, BACKEND_HW_F16=0"; BACKEND_HW_F16=0 ./.bin/bench --backend webgpu --adapter vulkan --only unary_f16,binary_f16,reduce_f16 --compare $OUT/torch.json 2>&1 | grep -v XDG
echo "== ours, BACKEND_GEMM_Q_DECODE8=1"; BACKEND_GEMM_Q_DECODE8=1 ./.bin/bench --backend webgpu --adapter vulkan --only 4096_n1 --compare $OUT/torch.json 2>&1 | grep -v XDG
echo "== cold start (driver disk cache off)"; export __GL_SHADER_DISK_CACHE=0
rm -rf /tmp/pc /tmp/pc0
for i in 1 2; do ./.bin/cold_start /tmp/pc 2>&1 | grep -v XDG; done
echo "-- BACKEND_HW_F16=0 (no probe at init)"; for i in 1 2; do BACKEND_HW_F16=0 ./.bin/cold_start /tmp/pc0 2>&1 | grep -v XDG | grep -E "cache|init|first gemm "; done
