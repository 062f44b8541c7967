"""One registry of chapters: every chapter has its files, and the README lists them all."""

from pathlib import Path

from chapters import CHAPTERS, readme_table

ROOT = Path(__file__).resolve().parents[1]


def test_every_chapter_has_a_page_a_lab_its_live_views_and_an_explanation():
    for c in CHAPTERS:
        for path in (c.page, f"labs/{c.slug}.py", f"figures/views/{c.slug}.py", f"content/{c.slug}.md"):
            assert (ROOT / path).exists(), path


def test_the_readme_lists_exactly_the_registered_chapters():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- chapters:start")[1].split("-->", 1)[1].split("<!-- chapters:end")[0]
    assert section.strip() == readme_table()


def test_the_navigation_script_is_not_beside_a_pages_folder():
    """Streamlit treats a pages/ folder beside the main script as a legacy multipage app, and
    would run a page's file directly for a deep link that is a fresh server's first request.
    The navigation script lives inside pages/, so the folder beside it would be pages/pages."""
    app = (ROOT / "app.py").read_text()
    assert 'st.App("pages/navigation.py"' in app
    assert (ROOT / "pages" / "navigation.py").is_file() and not (ROOT / "pages" / "pages").exists()
