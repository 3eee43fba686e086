using System.Text;
using GpuPool.Shim.Internal;
using GpuPool.Shim.Runtime;

namespace GpuPool.Shim.Tests;

/// <summary>The CUDA runtime's private tables: their layout, the refusal of an unknown one, and the integrity hash.</summary>
public sealed unsafe class ExportTableTests
{
    [Fact]
    public void Runtime_interface_table_holds_its_size_and_its_functions()
    {
        var uuid = Convert.FromHexString("6BD5FB6C5BF4E74A8987D93912FD9DF9");
        void* table;
        fixed (byte* id = uuid)
        {
            Assert.Equal(CuResult.Success, ExportTables.Get(&table, id));
        }

        var slots = (nint*)table;
        Assert.Equal(13 * sizeof(nint), slots[0]);
        Assert.NotEqual(0, slots[1]);   // module from a fat binary wrapper
        Assert.NotEqual(0, slots[2]);   // primary context
        Assert.NotEqual(0, slots[3]);   // nobody has described it: a stub that says so
    }

    [Fact]
    public void A_slot_nobody_has_described_answers_not_supported_instead_of_being_null()
    {
        var table = ExportTables.Tables["{21318C60-9714-3248-8CA6-41FF7324C8F2}"];
        var slots = (nint*)table.Address;
        Assert.Equal(77 * sizeof(nint), slots[0]);
        for (var i = 1; i < 77; i++)
        {
            Assert.NotEqual(0, slots[i]);
        }

        // Called as cuBLAS calls slot 51, with a context, a handle and a place for the answer: nothing is written.
        nint answer = 0x5151;
        var slot51 = (delegate* unmanaged<nint, nint, nint*, CuResult>)slots[51];
        Assert.Equal(CuResult.NotSupported, slot51(0, 0, &answer));
        Assert.Equal(0x5151, answer);
        Assert.Equal(CuResult.NotSupported, ((delegate* unmanaged<CuResult>)slots[76])());
    }

    [Fact]
    public void Each_stub_knows_its_own_table_and_slot()
    {
        var described = RuntimeTables.Layouts().Where(l => l.SizeInSlotZero)
            .SelectMany(l => Enumerable.Range(1, l.Slots - 1).Where(i => l.Functions.All(f => f.Index != i)).Select(i => (l.Name, l.Uuid, i)))
            .ToHashSet();
        _ = ExportTables.Tables;
        var assigned = Enumerable.Range(0, described.Count).Select(UnknownSlots.Describe).ToHashSet();
        Assert.Equal(described, assigned);
    }

    [Fact]
    public void Tools_thread_state_is_none_as_driver_535_answers()
    {
        var table = ExportTables.Tables["{42D85A81-23F6-CB47-8298-F6E78A3AECDC}"];
        var slots = (nint*)table.Address;
        Assert.Equal(3 * sizeof(nint), slots[0]);
        var state = (void*)0x1234;
        var threadState = (delegate* unmanaged<void**, CuResult>)slots[2];
        Assert.Equal(CuResult.Success, threadState(&state));
        Assert.True(state is null);
        Assert.Equal(CuResult.InvalidValue, threadState(null));
    }

    [Fact]
    public void Context_local_storage_table_has_no_size_slot()
    {
        var table = ExportTables.Tables["{C693336E-1121-DF11-A8C3-68F355D89593}"];
        var slots = (nint*)table.Address;
        Assert.NotEqual(0, slots[0]);
        Assert.NotEqual(0, slots[1]);
        Assert.NotEqual(0, slots[2]);
    }

    [Fact]
    public void Unknown_table_is_refused_with_a_null_pointer()
    {
        var uuid = new byte[16];
        Random.Shared.NextBytes(uuid);
        void* table = (void*)0x1234;
        fixed (byte* id = uuid)
        {
            Assert.Equal(CuResult.InvalidValue, ExportTables.Get(&table, id));
        }

        Assert.True(table is null);
    }

    [Fact]
    public void Every_table_is_keyed_once_and_fits_its_slots()
    {
        foreach (var layout in RuntimeTables.Layouts())
        {
            Assert.Matches("^{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}}$", layout.Uuid);
            Assert.All(layout.Functions, f => Assert.InRange(f.Index, layout.SizeInSlotZero ? 1 : 0, layout.Slots - 1));
        }

        Assert.Equal(RuntimeTables.Layouts().Count, RuntimeTables.Layouts().Select(l => l.Uuid).Distinct().Count());
    }

    [Theory]
    [InlineData("", "8350e5a3e24c153df2275c9f80692773")]
    [InlineData("a", "32ec01ec4a6dac72c0ab96fb34c0b5d1")]
    [InlineData("abc", "da853b0d3f88d99b30283a69e6ded6bb")]
    [InlineData("message digest", "ab4f496bfb2a530b219ff33031fe06b0")]
    [InlineData("abcdefghijklmnopqrstuvwxyz", "4e8ddff3650292ab5a4108c3aa47940b")]
    [InlineData("12345678901234567890123456789012345678901234567890123456789012345678901234567890", "d5976f79d83d3a0dc9806c3c66f3efd8")]
    public void Md2_matches_the_rfc_1319_test_suite(string message, string digest)
    {
        var md2 = new Md2();
        md2.Update(Encoding.ASCII.GetBytes(message));
        var result = new byte[16];
        md2.Final(result);
        Assert.Equal(digest, Convert.ToHexStringLower(result));
    }

    [Fact]
    public void Md2_gives_the_same_digest_however_the_input_is_split()
    {
        var data = Enumerable.Range(0, 100).Select(i => (byte)(i * 7)).ToArray();
        var whole = new Md2();
        whole.Update(data);
        var a = new byte[16];
        whole.Final(a);
        var parts = new Md2();
        parts.Update(data.AsSpan(0, 3));
        parts.Update(data.AsSpan(3, 29));
        parts.Update(data.AsSpan(32));
        var b = new byte[16];
        parts.Final(b);
        Assert.Equal(a, b);
    }
}
