"""Static tables behind the demo space (DESIGN §10): locations, prices, vendors, staff and
name pools. Plain data only; :mod:`finance.demo` turns it into rows.

Amounts are integer cents. Every name, TIN and address here is made up for the demo (employee
TINs use the 9xx area numbers no SSN uses). Sales tax rates are not here: the demo loads the
table in knowledge/tax_rates.yaml, like the billing engine.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------- space


@dataclass(frozen=True)
class LocationSpec:
    code: str
    name: str
    timezone: str
    address: str
    weight: int  # share of members who call it home (percent)
    hot_cents: int  # Hot Desk, per member per month
    dedicated_cents: int  # Dedicated Desk, per desk per month
    office_seat_cents: int  # Private Office, per seat per month
    office_deposit_cents: int  # Private Office security deposit, per subscription
    day_pass_cents: int
    meeting_rooms: tuple[tuple[str, int, int], ...]  # (name, capacity, hourly rate in cents)
    card_last4: str  # the location's company card
    area_code: str


LOCATIONS: tuple[LocationSpec, ...] = (
    LocationSpec(
        "DT", "Downtown", "America/New_York", "100 Hudson Street, New York, NY 10013", 40,
        37_500, 60_000, 90_000, 180_000, 3_500,
        (("Board Room", 12, 9_000), ("Hudson Room", 6, 5_000), ("Focus Room", 4, 3_000)),
        "3017", "212",
    ),
    LocationSpec(
        "RS", "Riverside", "America/Chicago", "350 North Riverside Plaza, Chicago, IL 60606", 30,
        27_500, 42_500, 65_000, 130_000, 2_500,
        (("Board Room", 10, 9_000), ("Lakeview Room", 6, 4_000)),
        "5521", "312",
    ),
    LocationSpec(
        "UT", "Uptown", "America/Los_Angeles", "1200 Sunset Boulevard, Los Angeles, CA 90026", 30,
        32_500, 50_000, 80_000, 160_000, 3_000,
        (("Board Room", 12, 8_000), ("Canyon Room", 6, 4_500), ("Palm Room", 4, 3_000)),
        "8830", "213",
    ),
)

VIRTUAL_OFFICE_CENTS = 9_900
ANNUAL_DISCOUNT_PERCENT = 10  # Dedicated Desk — Annual: 12 months prepaid, 10 % off

# --------------------------------------------------------------------------- sales tax

# Invoice tax rates are the demo space's table in knowledge/tax_rates.yaml (loaded with
# finance.tax.sync_tax_rates), so the demo and the billing engine tax the same way.
# Tax included in card receipts, by location (ppm), for the Expense.tax_cents field only.
PURCHASE_TAX_PPM = {"DT": 88_750, "RS": 102_500, "UT": 95_000}

# --------------------------------------------------------------------------- usage prices

PRINT_PAGE_CENTS = 15
COFFEE_MENU_CENTS = (350, 425, 475, 550)  # drip, latte, cold brew, matcha

# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class StaffSpec:
    """An employee, optionally with a Slack seat (role) in team T0DEMO."""

    key: str
    name: str
    title: str
    location: str | None  # location code; None = company-wide (books to Downtown)
    monthly_pay_cents: int
    tin: str
    address: str
    bank_last4: str
    slack_user: str | None = None
    role: str | None = None


TEAM_ID = "T0DEMO"
ADMIN_USER = ("U0ADMIN1", "Morgan Lee")  # the owner: admin in Slack, not on payroll

STAFF: tuple[StaffSpec, ...] = (
    StaffSpec("cfo", "Renee Okafor", "Chief Financial Officer", None, 950_000, "900-41-2207",
              "88 Bleecker Street, Apt 5C, New York, NY 10012", "6120", "U0CFO1", "cfo"),
    StaffSpec("ops", "Daniel Brooks", "Operations Manager", None, 720_000, "900-41-3318",
              "214 Carroll Street, Brooklyn, NY 11231", "7734", "U0MANAGER1", "manager"),
    StaffSpec("gm_dt", "Alicia Moreno", "General Manager, Downtown", "DT", 780_000,
              "900-41-4429", "31 Jane Street, New York, NY 10014", "1188", "U0GMDT1", "gm"),
    StaffSpec("gm_rs", "Tom Becker", "General Manager, Riverside", "RS", 690_000, "900-41-5530",
              "2210 North Halsted Street, Chicago, IL 60614", "2291", "U0GMRS1", "gm"),
    StaffSpec("gm_ut", "Grace Kim", "General Manager, Uptown", "UT", 740_000, "900-41-6641",
              "4417 Los Feliz Boulevard, Los Angeles, CA 90027", "3302", "U0GMUT1", "gm"),
    StaffSpec("staff_dt", "Sam Patel", "Community Associate", "DT", 420_000, "900-41-7752",
              "155 West 21st Street, New York, NY 10011", "4413", "U0STAFF1", "staff"),
    StaffSpec("staff_rs", "Jordan Morales", "Community Associate", "RS", 380_000, "900-41-8863",
              "418 Elm Park Avenue, Chicago, IL 60614", "5524", "U0STAFF2", "staff"),
    StaffSpec("staff_ut", "Nina Alvarez", "Community Associate", "UT", 400_000, "900-41-9974",
              "1820 Echo Park Avenue, Los Angeles, CA 90026", "6635", "U0STAFF3", "staff"),
    StaffSpec("fd_dt", "Chris Nguyen", "Front Desk Lead", "DT", 360_000, "900-42-1085",
              "72 Orchard Street, New York, NY 10002", "7746"),
    StaffSpec("fd_rs", "Olivia Hart", "Front Desk Lead", "RS", 330_000, "900-42-2196",
              "1515 West Division Street, Chicago, IL 60642", "8857"),
    StaffSpec("fd_ut", "Leo Park", "Front Desk Lead", "UT", 350_000, "900-42-3207",
              "3300 Sunset Boulevard, Los Angeles, CA 90026", "9968"),
)

# The employee the planted vendor_is_employee vendor copies (TIN and home address).
MOONLIGHTING_EMPLOYEE = "staff_rs"

# --------------------------------------------------------------------------- vendors


@dataclass(frozen=True)
class VendorSpec:
    key: str
    name: str
    account: str
    tin: str | None
    address: str
    is_contractor: bool = False
    mcc: str | None = None


VENDORS: tuple[VendorSpec, ...] = (
    # landlords (one per location), utilities, internet, cleaning, repairs
    VendorSpec("rent_DT", "Hudson Street Properties LLC", "5000", "81-4410023",
               "500 Fifth Avenue, New York, NY 10110"),
    VendorSpec("rent_RS", "Riverside Commons Realty", "5000", "81-4410147",
               "1 North Wacker Drive, Chicago, IL 60606"),
    VendorSpec("rent_UT", "Sunset Plaza Holdings", "5000", "81-4410261",
               "9000 Sunset Boulevard, West Hollywood, CA 90069"),
    VendorSpec("util_DT", "Con Edison", "5100", "81-4410385", "4 Irving Place, New York, NY 10003"),
    VendorSpec("util_RS", "ComEd", "5100", "81-4410409",
               "10 South Dearborn Street, Chicago, IL 60603"),
    VendorSpec("util_UT", "LADWP", "5100", "81-4410523",
               "111 North Hope Street, Los Angeles, CA 90012"),
    VendorSpec("net_DT", "Verizon Fios Business", "5200", "81-4410647",
               "1095 Avenue of the Americas, New York, NY 10036"),
    VendorSpec("net_RS", "Comcast Business", "5200", "81-4410761",
               "1 Comcast Center, Philadelphia, PA 19103"),
    VendorSpec("net_UT", "Spectrum Business", "5200", "81-4410885",
               "400 Washington Boulevard, Stamford, CT 06902"),
    VendorSpec("clean", "BrightSpace Janitorial", "5300", "81-4410909",
               "77 Commerce Street, Newark, NJ 07102"),
    VendorSpec("repair", "Metro Facilities Repair", "5400", "81-4411023",
               "1450 Broadway, New York, NY 10018"),
    # company-wide services (billed to Downtown)
    VendorSpec("nexudus", "Nexudus", "6200", "81-4411147", "20 Farringdon Road, London EC1M 3HE"),
    VendorSpec("cpa", "Chen & Associates CPAs", "6800", "81-4411261",
               "250 West 57th Street, New York, NY 10107"),
    VendorSpec("law", "Baker Lane Law PLLC", "6800", "81-4411385",
               "1 Liberty Plaza, New York, NY 10006"),
    VendorSpec("insure", "The Hartford", "6700", "81-4411409",
               "1 Hartford Plaza, Hartford, CT 06155"),
    VendorSpec("it", "ByteWise IT Support", "6400", "81-4411523",
               "640 West 28th Street, New York, NY 10001", is_contractor=True),
    VendorSpec("photo", "Ortiz Event Photography", "6400", "81-4411647",
               "2100 West Chicago Avenue, Chicago, IL 60622", is_contractor=True),
    VendorSpec("steelcase", "Steelcase", "1500", "81-4411761",
               "901 44th Street SE, Grand Rapids, MI 49508"),
    # card merchants
    VendorSpec("beans", "Counter Culture Coffee", "6000", "81-4411885",
               "4911 South Alston Avenue, Durham, NC 27713", mcc="5499"),
    VendorSpec("costco", "Costco Wholesale", "6000", "81-4411909",
               "999 Lake Drive, Issaquah, WA 98027", mcc="5300"),
    VendorSpec("staples", "Staples", "6100", "81-4412023",
               "500 Staples Drive, Framingham, MA 01702", mcc="5943"),
    VendorSpec("amazon", "Amazon Business", "6100", "81-4412147",
               "410 Terry Avenue North, Seattle, WA 98109", mcc="5942"),
    VendorSpec("homedepot", "The Home Depot", "5400", "81-4412261",
               "2455 Paces Ferry Road, Atlanta, GA 30339", mcc="5200"),
    VendorSpec("xerox", "Xerox", "6150", "81-4412385", "201 Merritt 7, Norwalk, CT 06851",
               mcc="5044"),
    VendorSpec("gads", "Google Ads", "6300", "81-4412409",
               "1600 Amphitheatre Parkway, Mountain View, CA 94043", mcc="7311"),
    VendorSpec("meta", "Meta Ads", "6300", "81-4412523", "1 Hacker Way, Menlo Park, CA 94025",
               mcc="7311"),
    VendorSpec("events", "Trader Joe's", "6010", "81-4412647",
               "800 South Shamrock Avenue, Monrovia, CA 91016", mcc="5411"),
    VendorSpec("meals", "Sweetgreen", "6950", "81-4412761",
               "3101 West Exposition Boulevard, Los Angeles, CA 90018", mcc="5812"),
    VendorSpec("slack", "Slack Technologies", "6200", "81-4412885",
               "500 Howard Street, San Francisco, CA 94105", mcc="5734"),
    VendorSpec("gws", "Google Workspace", "6200", "81-4412909",
               "1600 Amphitheatre Parkway, Mountain View, CA 94043", mcc="5734"),
    VendorSpec("zoom", "Zoom", "6200", "81-4413023", "55 Almaden Boulevard, San Jose, CA 95113",
               mcc="5734"),
    VendorSpec("adobe", "Adobe", "6200", "81-4413147", "345 Park Avenue, San Jose, CA 95110",
               mcc="5734"),
    VendorSpec("qbo", "QuickBooks Online", "6200", "81-4413261",
               "2700 Coast Avenue, Mountain View, CA 94043", mcc="5734"),
    VendorSpec("apple", "Apple Store", "1510", "81-4413385",
               "1 Apple Park Way, Cupertino, CA 95014", mcc="5732"),
    # contractors without a TIN: paid only by card (1099-K, not 1099-NEC) — a clean control
    VendorSpec("designer", "Lena Fischer Design", "6400", None,
               "22 Wicker Park Avenue, Chicago, IL 60622", is_contractor=True),
    # planted vendors (see finance.demo)
    VendorSpec("herman", "Herman Miller Store", "6100", "81-4413409",
               "855 East Main Avenue, Zeeland, MI 49464", mcc="5712"),
    VendorSpec("apex", "Apex Facility Services", "5400", "81-4413523",
               "3900 West 47th Street, Chicago, IL 60632"),
    VendorSpec("summit", "Summit Marketing Group", "6300", "81-4413647",
               "5800 West Adams Boulevard, Los Angeles, CA 90016"),
    VendorSpec("handyman", "Dan Kowalski Handyman", "6400", None,
               "7120 West Belmont Avenue, Chicago, IL 60634", is_contractor=True),
    VendorSpec("moonlight", "J. Morales Consulting", "6400", "900-41-8863",
               "418 Elm Park Avenue, Chicago, IL 60614", is_contractor=True),
)

# Monthly card subscriptions billed to Downtown (company-wide software): (vendor key, day, cents)
SAAS: tuple[tuple[str, int, int], ...] = (
    ("slack", 3, 26_250),
    ("gws", 5, 33_600),
    ("zoom", 8, 14_990),
    ("adobe", 12, 8_999),
    ("qbo", 15, 27_500),
)

# --------------------------------------------------------------------------- name pools

FIRST_NAMES = (
    "Aaron Abigail Adam Adrian Aisha Alan Alex Alexis Ali Alice Amara Amelia Amir Ana Andre "
    "Andrea Angela Anita Anna Anthony Arjun Ava Beatriz Ben Bianca Blake Brandon Brian Brianna "
    "Caleb Camila Carlos Carmen Caroline Cassandra Catherine Cecilia Chen Chloe Christina Claire "
    "Connor Daisy Dana David Deborah Deepa Derek Diana Diego Dmitri Dylan Eli Elena Elijah Eliza "
    "Emeka Emily Emma Eric Erin Ethan Eva Evan Farah Felix Fiona Gabriel Gemma George Gianna "
    "Hana Hannah Hassan Hector Helen Henry Hiro Ian Imani Ines Isaac Isabel Ivan Jack Jada James "
    "Jasmine Javier Jenna Jesse Joanna Joel Jonah Jose Julia Julian Kai Kara Karim Kate Keisha "
    "Kenji Kevin Kofi Laila Lauren Leah Lena Leon Liam Lila Lucas Lucia Luis Luna Maya Malik "
    "Marco Maria Mason Mateo Megan Mia Michael Miguel Mila Naomi Nathan Nadia Noah Nora Omar "
    "Oscar Paolo Paula Rachel Rafael Rahul Ravi Rebecca Rosa Ruby Ryan Sadie Samir Sara Sean "
    "Selena Simone Sofia Stella Tariq Tessa Theo Valentina Victor Wei Yara Yusuf Zara Zoe"
).split()

LAST_NAMES = (
    "Abbott Acosta Adams Ahmed Akhtar Allen Alvarado Anand Andersen Arias Bailey Baker Banerjee "
    "Barnes Bauer Bell Bennett Bishop Boyd Bradley Brennan Brown Bryant Burke Byrne Campbell "
    "Carter Castillo Chandra Chang Chavez Clarke Cohen Coleman Collins Cooper Costa Cruz Dalton "
    "Das Davies Delgado Diaz Dixon Doyle Duarte Dunn Edwards Ellis Evans Farrell Fernandez "
    "Fischer Fleming Flores Foster Fraser Fuller Garcia Gibson Gomez Gonzalez Gordon Grant Gupta "
    "Hale Hall Hamilton Hansen Harper Harris Hayes Henderson Hernandez Hill Hoffman Holt Howard "
    "Hughes Hunter Ibrahim Iyer Jackson Jensen Johnson Jones Joshi Kapoor Keller Kelly Khan "
    "Khoury Kim Knight Koh Kowalczyk Kumar Lambert Larsen Lawson Lee Lewis Lin Lopez Lucas "
    "Mahmoud Malik Marsh Martin Mendoza Meyer Miller Mitchell Molina Monroe Murphy Nakamura "
    "Nash Nelson Novak Obi Ortega Owens Pak Parker Pearson Perez Perry Petrov Phillips Price "
    "Quinn Ramirez Reed Reyes Richter Rios Roberts Rossi Russo Saito Sanchez Santos Schmidt "
    "Scott Sen Serrano Sharma Silva Sinclair Singh Soto Stewart Sullivan Suzuki Tanaka Taylor "
    "Thompson Torres Tran Turner Vargas Vasquez Vega Volkov Wagner Walsh Ward Watson Weber "
    "Wong Wright Yamamoto Young Zhang Zimmerman"
).split()

COMPANY_WORDS = (
    "Alder Alpine Amberly Anchor Arbor Arcadia Argent Aspen Atlas Aurora Avalon Basalt "
    "Beacon Birch Blackbird Bramble Brightwater Cardinal Cascade Cedar Celadon Cinder Cirrus "
    "Clearwater Cobalt Copper Coral Cove Crescent Crimson Cypress Dapper Delta Driftwood Ember "
    "Evergreen Falcon Fathom Fennel Fern Fieldstone Firefly Flint Foxglove Garnet Granite "
    "Greenline Hawthorn Heron Highline Hollow Indigo Iris Ironwood Ivy Juniper Keystone "
    "Lantern Larkspur Laurel Linden Lumen Magnolia Maple Meadow Meridian Mesa Millstone Monarch "
    "Moss Nimbus Oakridge Obsidian Onyx Orchard Osprey Paloma Pinecone Prairie Quarry Quill "
    "Redwood Ridgeline Riverbend Rowan Saffron Sage Sandstone Sequoia Silverline Sparrow "
    "Spruce Starling Stonebridge Summit Sundial Tamarack Thistle Tidewater Timber Topaz Trillium "
    "Tundra Upland Verdant Vesper Willow Wren Yarrow Zephyr"
).split()

COMPANY_KINDS = (
    "Analytics", "Architects", "Collective", "Consulting", "Creative", "Data", "Design",
    "Digital", "Films", "Health", "Interactive", "Labs", "Legal", "Media", "Partners",
    "Research", "Robotics", "Software", "Strategy", "Studio", "Systems", "Ventures", "Works",
    "Games", "Foods", "Capital", "Learning", "Audio", "Mobility", "Bio",
)

FREEMAIL_DOMAINS = ("gmail.com", "outlook.com", "icloud.com", "yahoo.com", "proton.me",
                    "fastmail.com")

# Names the generator must not hand out at random (named and planted members, staff).
RESERVED_COMPANY_WORDS = ("Acme", "Bluebird", "Northwind", "Kestrel", "Harbor", "Pine", "Summit")
RESERVED_PERSON_NAMES = ("Priya Shah", "Marcus Webb", "Lena Fischer", "Jordan Morales")
