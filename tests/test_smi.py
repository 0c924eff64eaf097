"""The nvidia-smi fallback: parsing, grouping into samples, the protocol it produces, and the
backend running a fake nvidia-smi that replays recorded output (tests/fixtures/smi)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.agent.backend import BackendError
from gputui.agent.smi import SmiBackend
from gputui.agent.smi_parse import (
    COUNTER_FIELDS,
    MARK_HELLO,
    MARK_STREAM,
    MARK_TEMPERATURE,
    REASONS_FIELD,
    REASONS_FIELD_OLD,
    RESERVED_FIELD,
    BadLine,
    DeviceErrorLine,
    GpuLine,
    SampleAssembler,
    SmiSession,
    SmiStreamMapper,
    bus_key,
    counters_from_probe,
    counters_probe_argv,
    fields_from_query,
    hello_argv,
    hello_failure,
    hello_message,
    parse_device_error,
    parse_hello,
    parse_stream_line,
    parse_temperature_report,
    reasons_field_from_probe,
    reserved_from_probe,
    session_command,
    stream_argv,
    stream_fields,
)
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import AgentError, Event, GpuInfo, GpuReading, Hello, Sample

FIXTURES = Path(__file__).parent / "fixtures" / "smi"
FAKE_SMI = FIXTURES / "fake_nvidia_smi.py"
HOSTS = {  # fixture prefix -> stream recording
    "h100": "h100_training.csv",
    "a100": "a100_faults.csv",
    "geforce": "geforce_laptop.csv",
}
READING_KEYS = {f.name for f in msgspec.structs.fields(GpuReading)}
INFO_KEYS = {f.name for f in msgspec.structs.fields(GpuInfo)}

Json = dict[str, Any]
SmiEnv = Callable[..., Path]  # smi_env(prefix, **variables) -> the fake's command log


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def lines(name: str) -> list[str]:
    return text(name).splitlines()


def hello_of(prefix: str) -> Json:
    return parse_hello(text(f"{prefix}_hello.csv"), text(f"{prefix}_temperature.txt"))


def assemble(prefix: str, reasons_field: str = REASONS_FIELD) -> tuple[SampleAssembler, list[Any]]:
    assembler = SampleAssembler(hello_of(prefix)["gpus"], 1.0, reasons_field)
    samples = []
    for n, line in enumerate(lines(HOSTS[prefix])):
        samples.extend(assembler.feed(line, float(n)))
    samples.extend(assembler.flush())
    return assembler, samples


def by_index(gpus: list[Json]) -> dict[int, Json]:
    return {g["index"]: g for g in gpus}


# --------------------------------------------------------------------------------------------
# One line
# --------------------------------------------------------------------------------------------


def test_an_h100_line_maps_every_field_to_its_protocol_key() -> None:
    parsed = parse_stream_line(lines("h100_training.csv")[0])
    assert isinstance(parsed, GpuLine)
    assert parsed.uuid == "GPU-7ad03e1d-58dc-4b46-134e-330f28b45c17"
    assert parsed.reading == {
        "index": 0,
        "temp_c": 66.0,
        "util_pct": 100.0,
        "mem_util_pct": 44.0,
        "mem_used_mib": 78342.0,
        "power_w": 675.5,
        "power_limit_w": 700.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "clock_events": 0,
        "pcie_gen": 5,
        "pcie_width": 16,
        "ecc_uncorrected_volatile": 0,
    }
    assert isinstance(parsed.reading["sm_clock_mhz"], int)  # ints stay ints on the wire


def test_power_capped_h100_reads_the_sw_power_cap_bit() -> None:
    capped = [parse_stream_line(line) for line in lines("h100_training.csv")]
    bits = {p.reading["clock_events"] for p in capped if isinstance(p, GpuLine)}
    assert bits == {0x0, 0x4}


@pytest.mark.parametrize("absent", ["[N/A]", "N/A", "[Not Supported]", "Not Supported", ""])
def test_not_available_values_are_left_out(absent: str) -> None:
    line = lines("h100_training.csv")[0].replace("675.50", absent)
    parsed = parse_stream_line(line)
    assert isinstance(parsed, GpuLine)
    assert "power_w" not in parsed.reading
    assert parsed.reading["power_limit_w"] == 700.0
    assert parsed.unreadable == [] and parsed.bad_values == []


def test_consumer_card_without_ecc_or_power_reads_the_rest() -> None:
    parsed = parse_stream_line(lines("geforce_laptop.csv")[0], REASONS_FIELD_OLD)
    assert isinstance(parsed, GpuLine)
    for key in ("power_w", "power_limit_w", "ecc_uncorrected_volatile"):
        assert key not in parsed.reading
    assert parsed.reading["clock_events"] == 0x1  # idle
    assert parsed.reading["pcie_gen"] == 1 and parsed.reading["pcie_width"] == 8


def test_gpu_requiring_reset_reads_only_its_status() -> None:
    line = next(line for line in lines("a100_faults.csv") if line.startswith("5,"))
    parsed = parse_stream_line(line)
    assert isinstance(parsed, GpuLine)
    assert parsed.reading == {"index": 5, "status": "reset_required", "error": "GPU requires reset"}


def test_gpu_is_lost_in_a_cell_makes_the_gpu_lost() -> None:
    line = lines("h100_training.csv")[3].replace(" 69,", " [GPU is lost],", 1)
    parsed = parse_stream_line(line)
    assert isinstance(parsed, GpuLine)
    assert parsed.reading == {"index": 3, "status": "lost", "error": "GPU is lost"}


def test_unknown_error_is_left_out_and_noted() -> None:
    line = lines("h100_training.csv")[0].replace("675.50", "[Unknown Error]")
    parsed = parse_stream_line(line)
    assert isinstance(parsed, GpuLine)
    assert "power_w" not in parsed.reading
    assert parsed.unreadable == ["power.draw"]
    assert parsed.reading.get("status", "ok") == "ok"


def test_a_gpu_with_every_value_unreadable_is_in_error() -> None:
    cells = lines("h100_training.csv")[0].split(",")
    line = ",".join(cells[:3] + [" [Unknown Error]"] * (len(cells) - 3))
    parsed = parse_stream_line(line)
    assert isinstance(parsed, GpuLine)
    assert parsed.reading["status"] == "error"
    assert len(parsed.unreadable) == len(cells) - 3


def test_a_number_that_does_not_parse_is_left_out_and_noted() -> None:
    line = lines("h100_training.csv")[0].replace("0x0000000000000000", "0xZZ")
    parsed = parse_stream_line(line)
    assert isinstance(parsed, GpuLine)
    assert "clock_events" not in parsed.reading
    assert parsed.bad_values == [REASONS_FIELD]


@pytest.mark.parametrize(
    ("line", "bus", "status"),
    [
        (
            "Unable to determine the device handle for GPU 0000:B7:00.0: GPU is lost.  "
            "Reboot the system to recover this GPU",
            (0, 0xB7, 0, 0),
            "lost",
        ),
        (
            "Unable to determine the device handle for GPU0000:3b:00.0: Unknown Error",
            (0, 0x3B, 0, 0),
            "lost",
        ),
        (
            "Unable to determine the device handle for GPU 00000000:DB:00.0: Insufficient "
            "Permissions",
            (0, 0xDB, 0, 0),
            "error",
        ),
        ("GPU is lost", None, "lost"),
    ],
)
def test_device_handle_errors_name_the_gpu_by_bus_id(
    line: str, bus: tuple[int, ...] | None, status: str
) -> None:
    parsed = parse_stream_line(line)
    assert isinstance(parsed, DeviceErrorLine)
    assert (parsed.bus, parsed.status, parsed.text) == (bus, status, line)


def test_bus_ids_compare_across_nvidia_smis_two_spellings() -> None:
    assert bus_key("00000000:3B:00.0") == bus_key("0000:3b:00.0") == (0, 0x3B, 0, 0)
    assert bus_key("not a bus id") is None


@pytest.mark.parametrize(
    "garbage",
    [
        "No devices were found",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        "0, GPU-1, truncated",
        "x, GPU-1, NVIDIA H100 80GB HBM3, 66, 100, 44, 78342, 81559, 675.50, 700.00, 1980, "
        "2619, 0x0, 5, 5, 16, 16, 0",
        "\x00\xff\ufffd",
    ],
)
def test_other_lines_are_bad_lines(garbage: str) -> None:
    assert isinstance(parse_stream_line(garbage), BadLine)
    assert parse_device_error(garbage) is None


def test_blank_lines_are_nothing() -> None:
    assert parse_stream_line("") is None
    assert parse_stream_line("   \r") is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=20))
def test_no_input_makes_the_assembler_raise(garbage: list[str]) -> None:
    assembler = SampleAssembler(hello_of("a100")["gpus"])
    for n, line in enumerate(garbage + lines("a100_faults.csv")[:8]):
        for sample in assembler.feed(line, float(n)):
            msgspec.convert(sample.gpus, list[GpuReading])
    assembler.flush()
    assembler.take_problems()


def test_garbage_is_counted_and_reported_sparingly() -> None:
    assembler = SampleAssembler()
    for _ in range(25):
        assert assembler.feed("something unexpected", 0.0) == []
    assert assembler.stats.bad_lines == 25
    problems = assembler.take_problems()
    assert [p["code"] for p in problems] == ["smi_bad_line", "smi_bad_line"]  # 1st and 10th
    assert problems[1]["text"].endswith("(10 times)")
    assert assembler.take_problems() == []


# --------------------------------------------------------------------------------------------
# Grouping lines into samples
# --------------------------------------------------------------------------------------------


def test_h100_stream_forms_one_sample_per_period() -> None:
    assembler, samples = assemble("h100")
    assert len(samples) == 6
    for n, sample in enumerate(samples):
        assert [g["index"] for g in sample.gpus] == list(range(8))
        assert sample.t == 8.0 * n  # the time of the period's first line
        assert all(g.get("status", "ok") == "ok" for g in sample.gpus)
    assert assembler.stats.lines == 48 and assembler.stats.bad_lines == 0


def test_a_sample_is_finished_as_soon_as_every_gpu_is_heard() -> None:
    assembler = SampleAssembler(hello_of("h100")["gpus"])
    stream = lines("h100_training.csv")
    assert all(assembler.feed(line, 0.0) == [] for line in stream[:7])
    assert len(assembler.feed(stream[7], 0.0)) == 1  # no waiting for the next period


def test_without_an_inventory_samples_split_where_indices_restart() -> None:
    assembler = SampleAssembler()
    done = [s for n, line in enumerate(lines("h100_training.csv")) for s in assembler.feed(line, n)]
    done += assembler.flush()
    assert [len(s.gpus) for s in done] == [8] * 6


def test_a100_idle_gpus_show_their_downshifted_link_and_idle_bit() -> None:
    _, samples = assemble("a100")
    first = by_index(samples[0].gpus)
    for idle in (4, 6, 7):
        assert first[idle]["pcie_gen"] == 1 and first[idle]["clock_events"] == 0x1
    assert first[0]["pcie_gen"] == 4 and first[0]["sm_clock_mhz"] == 1410


def test_a100_lost_gpu_mid_stream_while_others_keep_streaming() -> None:
    _, samples = assemble("a100")
    assert len(samples) == 6
    statuses = [by_index(s.gpus)[6].get("status", "ok") for s in samples]
    assert statuses == ["ok"] * 3 + ["lost"] * 3
    lost = by_index(samples[3].gpus)[6]
    assert lost["error"].startswith("Unable to determine the device handle for GPU 0000:B7:00.0")
    for sample in samples:
        gpus = by_index(sample.gpus)
        assert gpus[5]["status"] == "reset_required"
        assert all("util_pct" in gpus[i] for i in (0, 1, 2, 3, 4, 7))
    events = [e for s in samples for e in s.events]
    assert events == [
        {
            "kind": "reset_required",
            "gpu": 5,
            "uuid": "GPU-a605fd54-e126-c811-820e-b3e501e0fd3d",
            "text": "nvidia-smi: GPU requires reset",
        },
        {
            "kind": "gpu_lost",
            "gpu": 6,
            "uuid": "GPU-25c97a2a-4a28-94c8-1441-522631ba4823",
            "text": "nvidia-smi: " + lost["error"],
        },
    ]


def test_a100_unknown_error_is_counted_once_and_reported() -> None:
    assembler, samples = assemble("a100")
    assert "power_w" not in by_index(samples[2].gpus)[2]
    assert assembler.stats.unreadable_values == 1
    assert assembler.take_problems() == [
        {"code": "smi_unknown_error", "text": "GPU 2: power.draw unreadable", "gpu": 2}
    ]


def test_a_lost_gpu_with_an_unknown_bus_id_takes_the_missing_index() -> None:
    gpus = [{"index": i, "uuid": f"GPU-{i}", "name": "x"} for i in range(8)]  # no bus ids
    assembler = SampleAssembler(gpus)
    samples = [s for line in lines("a100_faults.csv") for s in assembler.feed(line, 0.0)]
    assert len(samples) == 6
    assert by_index(samples[5].gpus)[6]["status"] == "lost"


def test_a_lost_gpu_that_cannot_be_placed_is_an_event_without_a_gpu() -> None:
    assembler = SampleAssembler()  # no inventory at all
    stream = lines("a100_faults.csv")
    samples = [s for line in stream + stream[:1] for s in assembler.feed(line, 0.0)]
    events = [e for s in samples for e in s.events if e["kind"] == "gpu_lost"]
    assert len(events) == 1 and "gpu" not in events[0]
    assert events[0]["text"].startswith("Unable to determine the device handle")


def test_a_silent_gpu_is_in_error_when_the_next_period_starts() -> None:
    stream = [line for line in lines("h100_training.csv") if not line.startswith("3,")]
    assembler = SampleAssembler(hello_of("h100")["gpus"])
    samples = [s for line in stream for s in assembler.feed(line, 0.0)]
    assert len(samples) == 5  # the sixth waits for a next period or poll()
    missing = by_index(samples[0].gpus)[3]
    assert missing == {
        "index": 3,
        "status": "error",
        "error": "no line from nvidia-smi for this GPU",
    }
    assert assembler.poll(0.1) == []  # too soon
    assert len(assembler.poll(5.0)) == 1


def test_old_drivers_clock_field_reads_the_same() -> None:
    new = parse_stream_line(lines("h100_training.csv")[4], REASONS_FIELD)
    old = parse_stream_line(lines("h100_training.csv")[4], REASONS_FIELD_OLD)
    assert isinstance(new, GpuLine) and isinstance(old, GpuLine)
    assert new.reading == old.reading


# --------------------------------------------------------------------------------------------
# Hello
# --------------------------------------------------------------------------------------------


def test_h100_hello_has_inventory_limits_and_versions() -> None:
    hello = hello_of("h100")
    assert hello["driver_version"] == "550.54.15"
    assert hello["cuda_version"] == "12.4"
    assert hello["persistence_mode"] is True
    assert len(hello["gpus"]) == 8
    assert hello["gpus"][0] == {
        "index": 0,
        "uuid": "GPU-7ad03e1d-58dc-4b46-134e-330f28b45c17",
        "name": "NVIDIA H100 80GB HBM3",
        "serial": "1654922001486",
        "pci_bus_id": "00000000:18:00.0",
        "memory_total_mib": 81559.0,
        "power_limit_w": 700.0,
        "sm_clock_max_mhz": 1980,
        "mem_clock_max_mhz": 2619,
        "pcie_gen_max": 5,
        "pcie_width_max": 16,
        "ecc_enabled": True,
        "temp_shutdown_c": 92.0,
        "temp_slowdown_c": 89.0,
        "temp_gpu_max_c": 87.0,
        "temp_mem_max_c": 95.0,
    }


def test_a100_hello_gpu_needing_reset_keeps_what_it_can_read() -> None:
    gpus = by_index(hello_of("a100")["gpus"])
    assert gpus[0]["temp_gpu_max_c"] == 85.0 and gpus[0]["power_limit_w"] == 400.0
    assert gpus[5] == {
        "index": 5,
        "uuid": "GPU-a605fd54-e126-c811-820e-b3e501e0fd3d",
        "name": "NVIDIA A100-SXM4-80GB",
        "serial": "1324021034365",
        "pci_bus_id": "00000000:90:00.0",
    }


def test_consumer_card_hello_leaves_out_what_it_lacks() -> None:
    hello = hello_of("geforce")
    assert hello["persistence_mode"] is False
    assert hello["driver_version"] == "470.223.02"
    (gpu,) = hello["gpus"]
    for key in ("serial", "power_limit_w", "ecc_enabled", "temp_mem_max_c"):
        assert key not in gpu
    assert (gpu["temp_shutdown_c"], gpu["temp_slowdown_c"], gpu["temp_gpu_max_c"]) == (
        105.0,
        102.0,
        87.0,
    )


def test_relative_t_limit_lines_are_not_taken_for_limits() -> None:
    report = parse_temperature_report(
        "GPU 00000000:18:00.0\n"
        "    Temperature\n"
        "        GPU Current Temp                  : 34 C\n"
        "        GPU T.Limit Temp                  : 53 C\n"
        "        GPU Shutdown T.Limit Temp         : -5 C\n"
        "        GPU Slowdown T.Limit Temp         : -2 C\n"
        "        GPU Max Operating T.Limit Temp    : 0 C\n"
        "        Memory Max Operating Temp         : 95 C\n"
    )
    assert report.sections == [((0, 0x18, 0, 0), {"temp_mem_max_c": 95.0})]


def test_temperature_sections_match_by_order_when_bus_ids_do_not() -> None:
    hello_csv = lines("geforce_hello.csv")[0].replace("00000000:01:00.0", "[N/A]")
    (gpu,) = parse_hello(hello_csv, text("geforce_temperature.txt"))["gpus"]
    assert "pci_bus_id" not in gpu
    assert gpu["temp_slowdown_c"] == 102.0


def test_hello_with_a_lost_gpu_places_it_by_position() -> None:
    hello_csv = lines("a100_hello.csv")
    hello_csv[6] = "Unable to determine the device handle for GPU 0000:b7:00.0: Unknown Error"
    gpus = by_index(parse_hello("\n".join(hello_csv))["gpus"])
    assert gpus[6] == {"index": 6, "uuid": "", "name": "", "pci_bus_id": "00000000:B7:00.0"}
    assert gpus[7]["uuid"] == "GPU-55d75858-d2bf-093e-6dbc-47274f429aac"


@pytest.mark.parametrize(
    ("output", "code"),
    [
        ("sh: 1: nvidia-smi: not found", "smi_not_found"),
        ("bash: nvidia-smi: command not found", "smi_not_found"),
        ("No devices were found", "no_gpu"),
        (
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "smi_failed",
        ),
        ("", "smi_failed"),
    ],
)
def test_hello_failures_have_codes(output: str, code: str) -> None:
    assert hello_failure(output)[0] == code


def test_reasons_field_is_chosen_by_the_probes_answer() -> None:
    rejected = 'Field "clocks_event_reasons.active" is not a valid field to query.'
    assert reasons_field_from_probe(rejected) == REASONS_FIELD_OLD
    assert reasons_field_from_probe("0x0000000000000000\n0x0000000000000004\n") == REASONS_FIELD


def test_reserved_field_is_streamed_only_where_the_probe_found_it() -> None:
    rejected = 'Field "memory.reserved" is not a valid field to query.'
    assert reserved_from_probe(rejected) is False
    assert reserved_from_probe("") is False  # the probe did not run: stay with what works
    assert reserved_from_probe("616\n616\n") is True
    assert RESERVED_FIELD not in stream_fields()
    assert stream_fields(reserved=True) == [*stream_fields(), RESERVED_FIELD]  # last column


def test_counters_are_streamed_only_where_the_probe_found_them() -> None:
    rejected = 'Field "clocks_event_reasons_counters.sw_power_cap" is not a valid field to query.'
    assert counters_from_probe(rejected) is False
    assert counters_from_probe("") is False
    assert counters_from_probe("23312, 0, 0, 0, 0\n") is True
    assert counters_probe_argv()[1] == "--query-gpu=" + ",".join(COUNTER_FIELDS)
    assert COUNTER_FIELDS[0] == "clocks_event_reasons_counters.sw_power_cap"
    # After memory.reserved, in the field table's order; the columns one set or the other.
    both = stream_fields(reserved=True, counters=True)
    assert both == [*stream_fields(), RESERVED_FIELD, *COUNTER_FIELDS]
    assert stream_fields(counters=True) == [*stream_fields(), *COUNTER_FIELDS]
    assert fields_from_query("--query-gpu=" + ",".join(both)) == (REASONS_FIELD, True, True)
    assert fields_from_query("--query-gpu=" + ",".join(stream_fields())) == (
        REASONS_FIELD,
        False,
        False,
    )


# An idle H200 on driver 580 (fixtures/h200/h200-nvidia-smi-q.txt: FB Memory Usage Total 143771,
# Reserved 616, Used 0 MiB), as the stream prints it with memory.reserved asked for.
H200_IDLE_LINE = (
    "0, GPU-d1af61ed-4e8a-84c7-c965-3984f0586dd6, NVIDIA H200, 41, 0, 0, 0, 143771, 81.80, "
    "700.00, 345, 3201, 0x0000000000000001, 5, 5, 16, 16, 0, 616"
)


def test_reserved_memory_is_read_apart_from_used() -> None:
    parsed = parse_stream_line(H200_IDLE_LINE, reserved=True)
    assert isinstance(parsed, GpuLine)
    assert parsed.reading["mem_used_mib"] == 0.0
    assert parsed.reading["mem_reserved_mib"] == 616.0
    assert msgspec.convert(parsed.reading, GpuReading).mem_reserved_mib == 616.0
    # The column set is the one the stream was started with: one column more is no match.
    assert isinstance(parse_stream_line(H200_IDLE_LINE), BadLine)


def test_counters_are_read_as_microseconds_after_the_reserved_memory() -> None:
    line = H200_IDLE_LINE + ", 23312000, 0, 5, [N/A], 7"
    parsed = parse_stream_line(line, reserved=True, counters=True)
    assert isinstance(parsed, GpuLine)
    reading = msgspec.convert(parsed.reading, GpuReading)
    assert (reading.mem_reserved_mib, reading.held_sw_power_cap_us) == (616.0, 23_312_000)
    assert (reading.held_sync_boost_us, reading.held_sw_thermal_us) == (0, 5)
    assert reading.held_hw_thermal_us is None and reading.held_hw_power_brake_us == 7
    assert isinstance(parse_stream_line(line, reserved=True), BadLine)


def test_command_lines() -> None:
    assert stream_argv(0.5) == [
        "nvidia-smi",
        "--query-gpu=" + ",".join(stream_fields()),
        "--format=csv,noheader,nounits",
        "-lms",
        "500",
    ]
    assert stream_fields()[12] == REASONS_FIELD
    assert stream_fields(REASONS_FIELD_OLD)[12] == REASONS_FIELD_OLD
    assert hello_argv()[1].startswith("--query-gpu=index,uuid,name,serial,pci.bus_id,")


# --------------------------------------------------------------------------------------------
# The protocol: keys are model fields, messages decode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", sorted(HOSTS))
def test_every_key_is_a_field_of_the_wire_types(prefix: str) -> None:
    hello = hello_of(prefix)
    for gpu in hello["gpus"]:
        assert set(gpu) <= INFO_KEYS
    reasons = REASONS_FIELD_OLD if prefix == "geforce" else REASONS_FIELD
    _, samples = assemble(prefix, reasons)
    for sample in samples:
        for gpu in sample.gpus:
            assert set(gpu) <= READING_KEYS
        assert msgspec.convert(sample.gpus, list[GpuReading])


@pytest.mark.parametrize("prefix", sorted(HOSTS))
def test_mapped_stream_decodes_with_the_collectors_decoder(prefix: str) -> None:
    decoder = StreamDecoder()
    hello = hello_of(prefix)
    decoded = [decoder.decode(json.dumps(hello_message(hello, "gpu-node-01", 1.0)))]
    mapper = SmiStreamMapper(hello["gpus"], 1.0)
    for n, line in enumerate(lines(HOSTS[prefix])):
        decoded += [decoder.decode(json.dumps(m)) for m in mapper.feed(line, 100.0 + n)]
    decoded += [decoder.decode(json.dumps(m)) for m in mapper.end(200.0, 9, "driver gone")]
    assert decoder.stats.bad == 0
    first = decoded[0]
    assert isinstance(first, Hello) and first.backend == "smi" and first.slow_every == 1
    samples = [m for m in decoded if isinstance(m, Sample)]
    assert [s.seq for s in samples] == list(range(6))
    assert all(s.slow for s in samples)
    assert all(len(s.gpus) == len(first.gpus) for s in samples)
    last = decoded[-1]
    assert isinstance(last, AgentError) and last.fatal and last.code == "smi_exited"
    assert last.text == "nvidia-smi exited (9): driver gone"


def test_mapped_a100_stream_carries_events_and_non_fatal_errors() -> None:
    hello = hello_of("a100")
    mapper = SmiStreamMapper(hello["gpus"], 1.0)
    decoder = StreamDecoder()
    messages = [m for line in lines("a100_faults.csv") for m in mapper.feed(line, 1.0)]
    decoded = [decoder.decode(json.dumps(m)) for m in messages]
    events = [m for m in decoded if isinstance(m, Event)]
    assert [(e.kind, e.gpu) for e in events] == [("reset_required", 5), ("gpu_lost", 6)]
    errors = [m for m in decoded if isinstance(m, AgentError)]
    assert [(e.code, e.gpu, e.fatal) for e in errors] == [("smi_unknown_error", 2, False)]
    kinds = [type(m).__name__ for m in decoded]
    assert kinds.index("Event") < kinds.index("Sample")  # an event comes before its sample


def session_output(prefix: str) -> list[str]:
    return [
        MARK_HELLO,
        *lines(f"{prefix}_hello.csv"),
        MARK_TEMPERATURE,
        *lines(f"{prefix}_temperature.txt"),
        MARK_STREAM,
        *lines(HOSTS[prefix]),
    ]


def test_session_output_becomes_hello_then_samples() -> None:
    session = SmiSession("gpu-node-01", 1.0)
    decoder = StreamDecoder()
    out = [m for n, line in enumerate(session_output("h100")) for m in session.feed(line, n)]
    decoded = [decoder.decode(json.dumps(m)) for m in out]
    assert decoder.stats.bad == 0
    assert isinstance(decoded[0], Hello) and decoded[0].host == "gpu-node-01"
    assert decoded[0].gpus[0].temp_slowdown_c == 89.0
    assert sum(isinstance(m, Sample) for m in decoded) == 6


def test_collector_adapter_hands_the_runtime_typed_messages_and_refuses_implausible_ones() -> None:
    from gputui.collect.host_runtime import HostRuntime
    from gputui.collect.smi_adapter import SmiLineAdapter
    from gputui.core.model import HostState

    runtime = HostRuntime("gpu-node-01", interval_s=1.0, emit=lambda *_: None)
    adapter = SmiLineAdapter("gpu-node-01", 1.0, runtime.on_message, runtime.on_too_long)
    output = session_output("a100")
    first_row = output.index(MARK_STREAM) + 1
    cells = output[first_row].split(",")
    cells[3] = " 900"  # temperature.gpu: no GPU reads 900 C
    output[first_row] = ",".join(cells)
    for line in output:
        adapter.on_line(line.encode())
    adapter.end(0, "")
    stats = runtime.decoder.stats
    assert runtime.hello is not None and runtime.hello.backend == "smi"
    assert stats.invalid == 1 and "temp_c" in stats.first_problem
    assert runtime.sample is not None and runtime.state is HostState.UNREACHABLE
    # The same counts as the same messages encoded as lines and decoded.
    session, decoder = SmiSession("gpu-node-01", 1.0), StreamDecoder()
    lines = [m for n, line in enumerate(output) for m in session.feed(line, float(n))]
    lines += session.end(0.0, 0, "")
    for message in lines:
        decoder.decode(json.dumps(message))
    assert (stats.good, stats.invalid, stats.bad) == (decoder.stats.good, 1, 1)


def test_session_without_nvidia_smi_is_a_clear_fatal_error() -> None:
    session = SmiSession("gpu-node-01", 1.0)
    out = []
    for line in [MARK_HELLO, "sh: 1: nvidia-smi: not found", MARK_TEMPERATURE, MARK_STREAM]:
        out += session.feed(line, 0.0)
    out += session.end(1.0, 127, "sh: 1: exec: nvidia-smi: not found")
    assert len(out) == 1
    error = msgspec.convert(out[0], AgentError)
    assert (error.code, error.fatal) == ("smi_not_found", True)


def fake_on_path(tmp_path: Path) -> dict[str, str]:
    """A directory with an executable `nvidia-smi` that runs the fake through this Python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nvidia-smi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SMI}" "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def fake_env(prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "FAKE_SMI_HELLO": str(FIXTURES / f"{prefix}_hello.csv"),
        "FAKE_SMI_TEMPERATURE": str(FIXTURES / f"{prefix}_temperature.txt"),
        "FAKE_SMI_STREAM": str(FIXTURES / HOSTS[prefix]),
        "FAKE_SMI_PERIOD_S": "0.01",
    }
    env.update(extra)
    return env


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("old_driver", [False, True])
def test_session_command_runs_in_a_shell_end_to_end(tmp_path: Path, old_driver: bool) -> None:
    log = tmp_path / "argv.log"
    env = {**os.environ, **fake_on_path(tmp_path), **fake_env("geforce")}
    env.update(FAKE_SMI_EXIT="0:", FAKE_SMI_LOG=str(log))
    if old_driver:
        env["FAKE_SMI_OLD_DRIVER"] = "1"
    done = subprocess.run(
        ["sh", "-c", session_command(0.01)], env=env, capture_output=True, text=True, timeout=20
    )
    session = SmiSession("laptop", 0.01)
    out = [m for line in done.stdout.splitlines() for m in session.feed(line, 0.0)]
    out += session.end(1.0, done.returncode, done.stderr.strip())
    decoded = [msgspec.convert(m, Hello | Sample | Event | AgentError) for m in out]
    assert isinstance(decoded[0], Hello)
    assert sum(isinstance(m, Sample) for m in decoded) == 6
    streamed = [line for line in log.read_text().splitlines() if "-lms" in line]
    assert len(streamed) == 1  # one long-lived nvidia-smi, not one per sample
    assert (REASONS_FIELD_OLD if old_driver else REASONS_FIELD) in streamed[0]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("reserved", [None, "616"], ids=["without", "with"])
def test_session_command_streams_memory_reserved_where_nvidia_smi_knows_it(
    tmp_path: Path, reserved: str | None
) -> None:
    env = {**os.environ, **fake_on_path(tmp_path), **fake_env("h100", FAKE_SMI_EXIT="0:")}
    if reserved:
        env["FAKE_SMI_RESERVED"] = reserved
    done = subprocess.run(
        ["sh", "-c", session_command(0.01)], env=env, capture_output=True, text=True, timeout=20
    )
    session = SmiSession("gpu-node-01", 0.01)
    out = [m for line in done.stdout.splitlines() for m in session.feed(line, 0.0)]
    samples = [msgspec.convert(m, Sample) for m in out if m["type"] == "sample"]
    assert len(samples) == 6
    expected = float(reserved) if reserved else None
    assert {g.mem_reserved_mib for s in samples for g in s.gpus} == {expected}
    assert samples[0].gpus[0].mem_used_mib == 78342.0


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("counters", [None, "23312, 0, 0, 0, 9"], ids=["without", "with"])
def test_session_command_streams_the_counters_where_nvidia_smi_knows_them(
    tmp_path: Path, counters: str | None
) -> None:
    env = {**os.environ, **fake_on_path(tmp_path), **fake_env("h100", FAKE_SMI_EXIT="0:")}
    env["FAKE_SMI_RESERVED"] = "616"
    if counters:
        env["FAKE_SMI_COUNTERS"] = counters
    done = subprocess.run(
        ["sh", "-c", session_command(0.01)], env=env, capture_output=True, text=True, timeout=20
    )
    session = SmiSession("gpu-node-01", 0.01)
    out = [m for line in done.stdout.splitlines() for m in session.feed(line, 0.0)]
    samples = [msgspec.convert(m, Sample) for m in out if m["type"] == "sample"]
    assert len(samples) == 6
    assert {g.mem_reserved_mib for s in samples for g in s.gpus} == {616.0}
    held = {(g.held_sw_power_cap_us, g.held_hw_power_brake_us) for s in samples for g in s.gpus}
    assert held == ({(23312, 9)} if counters else {(None, None)})


# --------------------------------------------------------------------------------------------
# The backend, with a fake nvidia-smi
# --------------------------------------------------------------------------------------------


@pytest.fixture
def smi_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SmiEnv:
    """Sets the fake's environment: call with a fixture prefix and extra variables."""

    def use(prefix: str, **extra: str) -> Path:
        log = tmp_path / "argv.log"
        for key, value in fake_env(prefix, FAKE_SMI_LOG=str(log), **extra).items():
            monkeypatch.setenv(key, value)
        return log

    return use


def make_backend(interval_s: float = 0.01) -> SmiBackend:
    return SmiBackend(interval_s, smi=[sys.executable, str(FAKE_SMI)])


def as_sample(body: Json, seq: int) -> Sample:
    message = {"v": 1, "type": "sample", "t": 0.0, "seq": seq, **body}
    decoded = StreamDecoder().decode(json.dumps(message))
    assert isinstance(decoded, Sample)
    return decoded


def test_backend_streams_an_h100_host_from_one_process(smi_env: SmiEnv) -> None:
    log = smi_env("h100")
    backend = make_backend()
    try:
        hello = backend.hello()
        assert backend.name == "smi"
        assert len(hello["gpus"]) == 8 and hello["cuda_version"] == "12.4"
        samples = [as_sample(backend.sample(slow=False), n) for n in range(3)]
        assert all(s.slow and len(s.gpus) == 8 for s in samples)
        assert samples[0].gpus[0].sm_clock_mhz == 1980
        stream = backend._stream
        assert stream is not None
    finally:
        backend.close()
    assert stream.proc.poll() is not None  # close() ended nvidia-smi
    commands = log.read_text().splitlines()
    assert sum("-lms" in c for c in commands) == 1
    assert REASONS_FIELD in next(c for c in commands if "-lms" in c)
    backend.close()  # idempotent


@pytest.mark.parametrize("reserved", [None, "616"], ids=["without", "with"])
def test_backend_streams_memory_reserved_where_nvidia_smi_knows_it(
    smi_env: SmiEnv, reserved: str | None
) -> None:
    log = smi_env("h100", **({"FAKE_SMI_RESERVED": reserved} if reserved else {}))
    backend = make_backend()
    try:
        backend.hello()
        sample = as_sample(backend.sample(slow=False), 0)
    finally:
        backend.close()
    stream_command = next(c for c in log.read_text().splitlines() if "-lms" in c)
    assert (RESERVED_FIELD in stream_command) is bool(reserved)
    assert len(sample.gpus) == 8 and sample.gpus[0].mem_used_mib == 78342.0
    expected = float(reserved) if reserved else None
    assert [g.mem_reserved_mib for g in sample.gpus] == [expected] * 8


@pytest.mark.parametrize("counters", [None, "1, 2, 3, 4, 5"], ids=["without", "with"])
def test_backend_streams_the_counters_where_nvidia_smi_knows_them(
    smi_env: SmiEnv, counters: str | None
) -> None:
    log = smi_env("h100", **({"FAKE_SMI_COUNTERS": counters} if counters else {}))
    backend = make_backend()
    try:
        backend.hello()
        sample = as_sample(backend.sample(slow=False), 0)
    finally:
        backend.close()
    stream_command = next(c for c in log.read_text().splitlines() if "-lms" in c)
    assert (COUNTER_FIELDS[-1] in stream_command) is bool(counters)
    assert RESERVED_FIELD not in stream_command  # each optional field on its own probe
    expected = (1, 2, 3, 4, 5) if counters else (None,) * 5
    for g in sample.gpus:
        assert (
            g.held_sw_power_cap_us,
            g.held_sync_boost_us,
            g.held_sw_thermal_us,
            g.held_hw_thermal_us,
            g.held_hw_power_brake_us,
        ) == expected


def test_backend_on_an_old_driver_streams_the_throttle_field(smi_env: SmiEnv) -> None:
    log = smi_env("geforce", FAKE_SMI_OLD_DRIVER="1")
    backend = make_backend()
    try:
        backend.hello()
        sample = as_sample(backend.sample(slow=True), 0)
    finally:
        backend.close()
    assert sample.gpus[0].clock_events == 0x1 and sample.gpus[0].power_w is None
    stream_command = next(c for c in log.read_text().splitlines() if "-lms" in c)
    assert REASONS_FIELD_OLD in stream_command


def test_backend_pushes_lost_and_reset_events_once(smi_env: SmiEnv) -> None:
    smi_env("a100", FAKE_SMI_EXIT="9:NVIDIA-SMI has failed because it couldn't communicate")
    backend = make_backend()
    events: list[Json] = []
    samples = []
    try:
        backend.hello()
        backend.start_events(events.append)
        with pytest.raises(BackendError) as exited:
            for _ in range(20):
                samples.append(backend.sample(slow=False))
    finally:
        backend.close()
    assert [(e["kind"], e["gpu"]) for e in events] == [("reset_required", 5), ("gpu_lost", 6)]
    assert by_index(samples[-1]["gpus"])[6]["status"] == "lost"
    assert exited.value.code == "smi_exited"
    assert exited.value.text == (
        "nvidia-smi exited (9): NVIDIA-SMI has failed because it couldn't communicate"
    )


def test_backend_reports_unknown_errors_as_problems(smi_env: SmiEnv) -> None:
    smi_env("a100", FAKE_SMI_EXIT="0:")
    backend = make_backend()
    try:
        backend.hello()
        with pytest.raises(BackendError):
            for _ in range(20):
                backend.sample(slow=False)
        problems = backend.take_problems()
    finally:
        backend.close()
    assert problems == [
        {"code": "smi_unknown_error", "text": "GPU 2: power.draw unreadable", "gpu": 2}
    ]
    assert backend.stats.unreadable_values == 1


def test_backend_without_nvidia_smi_says_so() -> None:
    with pytest.raises(BackendError) as missing:
        SmiBackend(1.0, smi="/nonexistent/bin/nvidia-smi")
    assert missing.value.code == "smi_not_found"
    assert missing.value.text == "/nonexistent/bin/nvidia-smi not found on this host"


def test_backend_whose_nvidia_smi_vanished_after_start_says_so(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    backend = SmiBackend(1.0, smi=str(smi))
    smi.unlink()  # a driver upgrade in between, say
    with pytest.raises(BackendError) as missing:
        backend.hello()
    assert missing.value.code == "smi_not_found"


def test_backend_with_no_gpu_says_so(
    smi_env: SmiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi_env("h100")
    empty = tmp_path / "hello.csv"
    empty.write_text("No devices were found\n")
    monkeypatch.setenv("FAKE_SMI_HELLO", str(empty))
    with pytest.raises(BackendError) as none:
        make_backend().hello()
    assert none.value.code == "no_gpu"


def test_backend_whose_nvidia_smi_falls_silent_reports_every_gpu_in_error(smi_env: SmiEnv) -> None:
    smi_env("h100", FAKE_SMI_PERIOD_S="30")  # the first period, then nothing
    backend = make_backend(interval_s=0.05)
    try:
        backend.hello()
        assert as_sample(backend.sample(slow=False), 0).gpus[7].status == "ok"
        silent = as_sample(backend.sample(slow=False), 1)
    finally:
        backend.close()
    assert [g.status for g in silent.gpus] == ["error"] * 8
    assert silent.gpus[0].error == "nvidia-smi silent for 0.6 s"


def test_agent_with_the_smi_backend_streams_valid_protocol(tmp_path: Path) -> None:
    pytest.importorskip("gputui.agent.main")
    env = {**os.environ, **fake_on_path(tmp_path), **fake_env("a100", FAKE_SMI_PERIOD_S="0.1")}
    argv = ["--backend", "smi", "--interval", "0.1", "--duration", "1.5", "--host", "dgx-a100-07"]
    done = subprocess.run(
        [sys.executable, "-m", "gputui.agent", *argv, "--stdin-watch", "off"],
        env=env,
        capture_output=True,
        timeout=20,
    )
    decoder = StreamDecoder()
    decoded = [decoder.decode(line) for line in done.stdout.splitlines()]
    assert decoder.stats.bad == 0, decoder.stats.last_problem
    assert isinstance(decoded[0], Hello) and decoded[0].backend == "smi"
    assert decoded[0].gpus[6].pci_bus_id == "00000000:B7:00.0"
    samples = [m for m in decoded if isinstance(m, Sample)]
    assert all(s.slow for s in samples)
    # The recording is 6 periods; then nvidia-smi holds its pipe and says nothing, and the
    # samples say so. (A sample may be skipped when the run loop is late: only the newest
    # period is sent.)
    recorded = [s for s in samples if s.gpus[0].status == "ok"]
    silent = samples[len(recorded) :]
    assert recorded and all(g.status == "error" for s in silent for g in s.gpus)
    lost = [s.gpus[6].status == "lost" for s in recorded]
    assert lost[0] is False and lost[-1] is True and lost == sorted(lost)
    assert all(s.gpus[7].status == "ok" for s in recorded)
    events = [(m.kind, m.gpu) for m in decoded if isinstance(m, Event)]
    assert events == [("reset_required", 5), ("gpu_lost", 6)]


# --------------------------------------------------------------------------------------------
# Runs on the host's python3 (3.8+), standard library only
# --------------------------------------------------------------------------------------------

AGENT_DIR = Path(__file__).parent.parent / "gputui" / "agent"
SMI_MODULES = [AGENT_DIR / "smi.py", *sorted((AGENT_DIR / "smi_parse").glob("*.py"))]


@pytest.mark.parametrize("path", SMI_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_smi_modules_parse_as_python_38_and_import_only_the_stdlib(path: Path) -> None:
    tree = ast.parse(path.read_text(), feature_version=(3, 8))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module is not None
            assert node.module.split(".")[0] in sys.stdlib_module_names | {"__future__"}
        elif isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names)


PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3")


@pytest.mark.skipif(not PY38.exists(), reason="no Python 3.8 interpreter here")
def test_parser_runs_on_python_38() -> None:
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from gputui.agent.smi_parse import SmiStreamMapper, parse_hello;"
        "d = sys.argv[2]; h = parse_hello(open(d + '/a100_hello.csv').read(),"
        " open(d + '/a100_temperature.txt').read());"
        "m = SmiStreamMapper(h['gpus']);"
        "out = [x for l in open(d + '/a100_faults.csv') for x in m.feed(l, 0.0)];"
        "print(sum(x['type'] == 'sample' for x in out))"
    )
    root = str(Path(__file__).parent.parent)
    done = subprocess.run(
        [str(PY38), "-c", script, root, str(FIXTURES)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"
