using CsCheck;

namespace GpuPool.Protocol.Tests;

public sealed class UnitsTests
{
    [Theory]
    [InlineData("512MiB", 512UL << 20)]
    [InlineData("2GiB", 2UL << 30)]
    [InlineData("1.5G", 3UL << 29)]
    [InlineData("1000KB", 1_000_000UL)]
    [InlineData("4096", 4096UL)]
    [InlineData(" 64 mib ", 64UL << 20)]
    [InlineData("0", 0UL)]
    public void TryParseBytes_reads_sizes_as_people_write_them(string text, ulong bytes)
    {
        Assert.True(Units.TryParseBytes(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("banana")]
    [InlineData("-1M")]
    [InlineData("1e30G")]
    [InlineData("MiB")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    public void TryParseBytes_rejects_what_is_not_a_size(string? text)
    {
        Assert.False(Units.TryParseBytes(text, out var parsed));
        Assert.Equal(0UL, parsed);
    }

    [Theory]
    [InlineData(0UL, "0 B")]
    [InlineData(1023UL, "1023 B")]
    [InlineData(1536UL, "1.5 KiB")]
    [InlineData(512UL << 20, "512 MiB")]
    [InlineData(2UL << 30, "2 GiB")]
    [InlineData(3UL << 40, "3 TiB")]
    public void FormatBytes_picks_the_largest_binary_unit_that_keeps_the_number_at_least_one(ulong bytes, string text)
    {
        Assert.Equal(text, Units.FormatBytes(bytes));
    }

    [Fact]
    public void A_whole_number_of_any_unit_formats_and_parses_back_exactly()
    {
        Gen.Select(Gen.ULong[1, 1023], Gen.Int[0, 4]).Sample((count, unit) =>
        {
            var bytes = count << (10 * unit);

            Assert.True(Units.TryParseBytes(Units.FormatBytes(bytes), out var parsed));
            Assert.Equal(bytes, parsed);
        });
    }

    [Fact]
    public void Any_size_formats_and_parses_back_to_within_the_five_percent_that_one_decimal_keeps()
    {
        // Up to 2^62: TryParseBytes refuses sizes past 2^63, which FormatBytes can print.
        Gen.ULong[0, 1UL << 62].Sample(bytes =>
        {
            var text = Units.FormatBytes(bytes);

            Assert.True(Units.TryParseBytes(text, out var parsed), text);
            var error = parsed > bytes ? parsed - bytes : bytes - parsed;
            Assert.True(error <= bytes / 20, $"{bytes} -> '{text}' -> {parsed}");
        }, iter: 10_000);
    }
}
