namespace GpuPool.Ptx.Engine;

/// <summary>
/// What the collective instructions do once their threads have all arrived: read each waiting thread's operands from
/// its spilled registers, write the results there, and let the threads go.
/// </summary>
internal static class Collectives
{
    /// <summary>Runs the warp-wide instruction thread <paramref name="t"/> waits at, if every thread it names waits there too.</summary>
    public static bool TryWarp(BlockState block, int t)
    {
        var site = block.Kernel.Collectives[block.At[t]];
        var warp = t / 32;
        var first = warp * 32;
        var mask = (uint)Read(block, t, site.Sources[^1]);
        var needed = mask & block.LiveMask(warp);
        uint here = 0;
        for (var lane = 0; lane < 32 && first + lane < block.Threads; lane++)
        {
            if (block.Resume[first + lane] >= 0 && block.At[first + lane] == block.At[t])
            {
                here |= 1u << lane;
            }
        }

        if ((here & needed) != needed || (here & (1u << (t - first))) == 0)
        {
            return false;
        }

        switch (site.Kind)
        {
            case SiteKind.Shuffle:
                Shuffle(block, site, first, here);
                break;
            case SiteKind.Vote:
                Vote(block, site, first, here);
                break;
            case SiteKind.Match:
                Match(block, site, first, here);
                break;
            case SiteKind.Redux:
                Redux(block, site, first, here);
                break;
        }

        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) != 0)
            {
                block.Go(first + lane);
            }
        }

        return true;
    }

    /// <summary>
    /// Lets go the threads waiting at each barrier that has had all it waits for: the count its bar.sync names (threads
    /// waiting plus those that passed it with bar.arrive), or, without a count, every live thread of the block. bar.red
    /// reduces its predicate over the threads it lets go. Whether any went.
    /// </summary>
    public static bool Barriers(BlockState block, int[] arrivals)
    {
        var waiting = new SortedDictionary<int, List<int>>();
        var live = 0;
        for (var t = 0; t < block.Threads; t++)
        {
            if (block.Resume[t] < 0)
            {
                continue;
            }

            live++;
            if (block.At[t] >= 0 && block.Kernel.Collectives[block.At[t]] is { Kind: SiteKind.Barrier or SiteKind.BarrierReduce } site)
            {
                var id = BarrierId(block, t, site);
                if (!waiting.TryGetValue(id, out var threads))
                {
                    waiting[id] = threads = [];
                }

                threads.Add(t);
            }
        }

        var any = false;
        foreach (var (id, threads) in waiting)
        {
            var site = block.Kernel.Collectives[block.At[threads[0]]];
            var expected = Count(block, threads[0], site) ?? live;
            if (threads.Count + arrivals[id] < expected)
            {
                continue;
            }

            arrivals[id] = (int)Math.Max(0, arrivals[id] - (expected - threads.Count));
            Release(block, threads);
            any = true;
        }

        return any;
    }

    /// <summary>bar.arrive by thread <paramref name="t"/>: one more arrival at its barrier; the thread goes on.</summary>
    public static void Arrive(BlockState block, int t, int collective, int[] arrivals)
    {
        var site = block.Kernel.Collectives[collective];
        arrivals[BarrierId(block, t, site)]++;
    }

    /// <summary>The barrier a thread waits at (0–15), from its first operand.</summary>
    private static int BarrierId(BlockState block, int t, CollectiveSite site)
    {
        var first = Read(block, t, site.Sources[0]);
        return first switch
        {
            >= 0 and < 16 => (int)first,
            _ => throw new PtxFault(PtxFaultKind.Trap, $"kernel {block.Kernel.Name}, {site.Where}: barrier {first} is not one of the block's 16 (0 to 15)"),
        };
    }

    /// <summary>The thread count a barrier instruction names, if it names one (a positive multiple of 32).</summary>
    private static long? Count(BlockState block, int t, CollectiveSite site)
    {
        var operands = site.Kind == SiteKind.BarrierReduce ? site.Sources.Length - 1 : site.Sources.Length;
        if (operands < 2)
        {
            return null;
        }

        var count = Read(block, t, site.Sources[1]);
        return count > 0 && count % 32 == 0
            ? count
            : throw new PtxFault(PtxFaultKind.Trap, $"kernel {block.Kernel.Name}, {site.Where}: a barrier's thread count must be a positive multiple of 32, not {count}");
    }

    private static void Release(BlockState block, List<int> threads)
    {
        long popc = 0;
        var all = true;
        var any = false;
        foreach (var t in threads)
        {
            var site = block.Kernel.Collectives[block.At[t]];
            if (site.Kind == SiteKind.BarrierReduce)
            {
                var p = Read(block, t, site.Sources[^1]) != 0;
                popc += p ? 1 : 0;
                all &= p;
                any |= p;
            }
        }

        foreach (var t in threads)
        {
            var site = block.Kernel.Collectives[block.At[t]];
            if (site.Kind == SiteKind.BarrierReduce)
            {
                Write(block, t, site.Dests[0], site.Mode switch { "popc" => popc, "and" => all ? 1 : 0, _ => any ? 1 : 0 });
            }

            block.Go(t);
        }
    }

    private static void Shuffle(BlockState block, CollectiveSite site, int first, uint here)
    {
        // Read every source first: a thread's destination may be another's source register.
        Span<uint> values = stackalloc uint[32];
        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) != 0)
            {
                values[lane] = (uint)Read(block, first + lane, site.Sources[0]);
            }
        }

        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) == 0)
            {
                continue;
            }

            var t = first + lane;
            var b = (int)Read(block, t, site.Sources[1]);
            var c = (int)Read(block, t, site.Sources[2]);
            var segmask = (c >> 8) & 0x1f;
            var maxLane = (lane & segmask) | (c & 0x1f & ~segmask);
            var minLane = lane & segmask;
            int j;
            bool valid;
            switch (site.Mode)
            {
                case "up":
                    j = lane - b;
                    valid = j >= maxLane;
                    break;
                case "down":
                    j = lane + b;
                    valid = j <= maxLane;
                    break;
                case "bfly":
                    j = lane ^ b;
                    valid = j <= maxLane;
                    break;
                default:
                    j = minLane | (b & 0x1f & ~segmask);
                    valid = j <= maxLane;
                    break;
            }

            if (!valid || j < 0 || j > 31)
            {
                j = lane;
            }

            // A source lane that is not taking part gives an undefined value on a GPU: here, its register as it is.
            var value = (here & (1u << j)) != 0 ? values[j] : (uint)Read(block, first + j < block.Threads ? first + j : t, site.Sources[0]);
            Write(block, t, site.Dests[0], (int)value);
            Write(block, t, site.Dests[1], valid ? 1 : 0);
        }
    }

    private static void Vote(BlockState block, CollectiveSite site, int first, uint here)
    {
        uint ballot = 0;
        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) != 0 && Read(block, first + lane, site.Sources[0]) != 0)
            {
                ballot |= 1u << lane;
            }
        }

        long result = site.Mode switch
        {
            "all" => ballot == here ? 1 : 0,
            "any" => ballot != 0 ? 1 : 0,
            "uni" => ballot == 0 || ballot == here ? 1 : 0,
            _ => (int)ballot,
        };
        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) != 0)
            {
                Write(block, first + lane, site.Dests[0], result);
            }
        }
    }

    private static void Match(BlockState block, CollectiveSite site, int first, uint here)
    {
        Span<long> values = stackalloc long[32];
        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) != 0)
            {
                values[lane] = Read(block, first + lane, site.Sources[0]);
                if (site.Type != "b64")
                {
                    values[lane] = (uint)values[lane];
                }
            }
        }

        var allSame = true;
        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) == 0)
            {
                continue;
            }

            uint same = 0;
            for (var other = 0; other < 32; other++)
            {
                if ((here & (1u << other)) != 0 && values[other] == values[lane])
                {
                    same |= 1u << other;
                }
            }

            allSame &= same == here;
            if (site.Mode == "any")
            {
                Write(block, first + lane, site.Dests[0], (int)same);
            }
        }

        if (site.Mode == "all")
        {
            for (var lane = 0; lane < 32; lane++)
            {
                if ((here & (1u << lane)) != 0)
                {
                    Write(block, first + lane, site.Dests[0], allSame ? (int)here : 0);
                    Write(block, first + lane, site.Dests[1], allSame ? 1 : 0);
                }
            }
        }
    }

    private static void Redux(BlockState block, CollectiveSite site, int first, uint here)
    {
        var signed = site.Type == "s32";
        long result = site.Mode switch
        {
            "min" => signed ? int.MaxValue : uint.MaxValue,
            "and" => uint.MaxValue,
            _ => 0,
        };
        if (site.Mode == "max")
        {
            result = signed ? int.MinValue : 0;
        }

        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) == 0)
            {
                continue;
            }

            var raw = Read(block, first + lane, site.Sources[0]);
            long v = signed ? (int)raw : (uint)raw;
            result = site.Mode switch
            {
                "add" => (uint)(result + v),
                "min" => Math.Min(result, v),
                "max" => Math.Max(result, v),
                "and" => result & v,
                "or" => result | v,
                _ => result ^ v,
            };
        }

        for (var lane = 0; lane < 32; lane++)
        {
            if ((here & (1u << lane)) != 0)
            {
                Write(block, first + lane, site.Dests[0], (int)result);
            }
        }
    }

    private static long Read(BlockState block, int t, SiteOperand operand)
    {
        if (!operand.IsRegister)
        {
            return operand.Immediate;
        }

        var value = (long)block.Spill[(t * block.Kernel.RegisterCount) + operand.Slot];
        return operand.Negate ? value ^ 1 : value;
    }

    private static void Write(BlockState block, int t, SiteOperand operand, long value)
    {
        if (operand.IsRegister)
        {
            block.Spill[(t * block.Kernel.RegisterCount) + operand.Slot] = (ulong)value;
        }
    }
}
