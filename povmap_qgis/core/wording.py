"""Small helpers for messages users read: counts with the right plural."""


def counted(number, singular, plural=None):
    """'1 member', '3 members', '1,200 cells'; ``plural`` when adding an s is wrong."""
    word = singular if number == 1 else (plural or f"{singular}s")
    return f"{number:,} {word}"
