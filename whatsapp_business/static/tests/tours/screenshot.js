/** @odoo-module **/

/*
 * The README screenshots taken by the tours (docs/screenshots), shared by the tour
 * files as "@whatsapp_business/../tests/tours/screenshot" (Odoo's name for a file
 * of static/tests/, on Odoo 18 and 19).
 */

// Set by test_tours.py when the README screenshots are wanted (see docs/screenshots).
const SCREENSHOT_COOKIE = "whatsapp_business_screenshots=1";
const SCREENSHOT_MARK = "whatsapp_business:screenshot:";
const SCREENSHOT_TIMEOUT = 10000;

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A step that does nothing unless screenshots were asked for: then it scrolls
 * `trigger` into view (`block` as in scrollIntoView), closes the notifications
 * if asked, lets the UI settle and asks the test (through a console message) for
 * a PNG of the page, waiting until the test says it is taken.
 */
export function screenshotStep(name, trigger, options = {}) {
    const { block = "center", closeNotifications = false } = options;
    return {
        content: `Screenshot ${name} (only when asked for)`,
        trigger,
        async run() {
            if (!document.cookie.split("; ").includes(SCREENSHOT_COOKIE)) {
                return;
            }
            if (closeNotifications) {
                for (const button of document.querySelectorAll(".o_notification_close")) {
                    button.click();
                }
            }
            this.anchor.scrollIntoView({ block });
            await sleep(400);
            const taken = new Promise((resolve) => {
                window.whatsappBusinessScreenshotTaken = resolve;
            });
            console.log(`${SCREENSHOT_MARK}${name}`);
            await Promise.race([taken, sleep(SCREENSHOT_TIMEOUT)]);
        },
    };
}
