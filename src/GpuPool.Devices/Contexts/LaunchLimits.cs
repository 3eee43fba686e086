namespace GpuPool.Devices.Contexts;

/// <summary>Refuses a launch shape the device cannot run, before it is queued, against the device's own attributes.</summary>
internal static class LaunchLimits
{
    /// <summary>
    /// Checks <paramref name="d"/> against CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK (1), MAX_BLOCK_DIM_X/Y/Z (2-4),
    /// MAX_GRID_DIM_X/Y/Z (5-7) and MAX_SHARED_MEMORY_PER_BLOCK (8), with a GPU's usual limits where the device does not say.
    /// </summary>
    public static void Check(string kernel, LaunchDims d, IReadOnlyDictionary<int, long> attributes)
    {
        if (d.GridX == 0 || d.GridY == 0 || d.GridZ == 0 || d.BlockX == 0 || d.BlockY == 0 || d.BlockZ == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"launch of {kernel}: grid and block dimensions must all be at least 1");
        }

        long Limit(int attribute, long fallback) => attributes.GetValueOrDefault(attribute, fallback);
        if ((ulong)d.BlockX * d.BlockY * d.BlockZ > (ulong)Limit(1, 1024)
            || d.BlockX > Limit(2, 1024) || d.BlockY > Limit(3, 1024) || d.BlockZ > Limit(4, 64)
            || d.GridX > Limit(5, int.MaxValue) || d.GridY > Limit(6, 65535) || d.GridZ > Limit(7, 65535))
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument,
                $"launch of {kernel}: block {d.BlockX}x{d.BlockY}x{d.BlockZ} / grid {d.GridX}x{d.GridY}x{d.GridZ} is past the device's limits "
                + $"({Limit(1, 1024)} threads per block, block {Limit(2, 1024)}x{Limit(3, 1024)}x{Limit(4, 64)}, grid {Limit(5, int.MaxValue)}x{Limit(6, 65535)}x{Limit(7, 65535)})");
        }

        if (d.SharedMemBytes > Limit(8, 48 * 1024))
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument,
                $"launch of {kernel}: {d.SharedMemBytes} bytes of dynamic shared memory is more than the {Limit(8, 48 * 1024)} the device allows per block");
        }
    }
}
