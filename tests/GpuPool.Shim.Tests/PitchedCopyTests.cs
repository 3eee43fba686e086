using GpuPool.Shim.Exports;

namespace GpuPool.Shim.Tests;

/// <summary>How a 2D or 3D copy becomes the SDK's linear copies: as few contiguous pieces as the two layouts allow.</summary>
public sealed class PitchedCopyTests
{
    private static Cuda.PitchedSide Side(ulong pitch, ulong height = 0, ulong x = 0, ulong y = 0, ulong z = 0)
        => new(Device: true, Address: 0x1000, x, y, z, pitch, height, "side");

    [Fact]
    public void Rows_as_wide_as_both_pitches_are_one_copy()
    {
        var pieces = Cuda.Pieces(Side(64), Side(64), width: 64, height: 10, depth: 1);

        Assert.Equal([(0UL, 0UL, 640UL)], pieces);
    }

    [Fact]
    public void A_single_row_is_one_copy_whatever_the_pitches()
    {
        var pieces = Cuda.Pieces(Side(100, x: 4, y: 2), Side(512), width: 50, height: 1, depth: 1);

        Assert.Equal([(204UL, 0UL, 50UL)], pieces);
    }

    [Fact]
    public void Padded_rows_are_one_copy_each_at_their_pitches()
    {
        var pieces = Cuda.Pieces(Side(100), Side(512, x: 8, y: 1), width: 100, height: 3, depth: 1);

        Assert.Equal([(0UL, 520UL, 100UL), (100UL, 1032UL, 100UL), (200UL, 1544UL, 100UL)], pieces);
    }

    [Fact]
    public void Contiguous_rows_with_padded_slices_are_one_copy_per_slice()
    {
        var pieces = Cuda.Pieces(Side(32, height: 4), Side(32, height: 6), width: 32, height: 4, depth: 2);

        Assert.Equal([(0UL, 0UL, 128UL), (128UL, 192UL, 128UL)], pieces);
    }

    [Fact]
    public void A_volume_contiguous_on_both_sides_is_one_copy()
    {
        var pieces = Cuda.Pieces(Side(16, height: 3), Side(16, height: 3), width: 16, height: 3, depth: 5);

        Assert.Equal([(0UL, 0UL, 240UL)], pieces);
    }

    [Fact]
    public void The_extent_runs_from_the_first_byte_to_the_end_of_the_last_row()
    {
        var side = Side(pitch: 512, height: 40, x: 10, y: 2, z: 1);

        Assert.Equal(10UL + (2 * 512) + (512 * 40), side.First);
        Assert.Equal((2UL * 512 * 40) + (4 * 512) + 100, side.Extent(width: 100, height: 5, depth: 3));
    }
}
