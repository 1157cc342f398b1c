#!/usr/bin/env bash
# The wheels benchmarks/gpu/run.sh installs on the GPU machine (no network there; about 49 MB, under the 64 MB a
# run carries): the packages its image lacks, for its Python 3.12 on x86-64. Run here, from the repository root;
# then carry .whl (ignored by git) with the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    torchdata==0.11.0 bitsandbytes==0.50.2 liger-kernel==0.8.5 hjson==3.1.0 pydantic==2.14.4 \
    pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
# DeepSpeed publishes a source archive only: its pure-Python wheel (ops compiled at run time, none needed here)
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
du -sh .whl
